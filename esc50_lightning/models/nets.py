"""The networks: plain ``nn.Module``s mapping ``(batch, bins, frames)`` spectrograms to logits.

Each takes ``(n_bins, n_frames, num_classes)`` first; the CLI fills them from the DataModule,
so no shape is hard-coded.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """The seed's MLP: flatten, fully connected, ReLU, fully connected.

    Input ``(batch, bins, frames)``; output ``(batch, num_classes)``. ``input_dropout`` drops
    spectrogram cells before the first layer (a strong regulariser for 20,000 inputs).

    ``bf16_pays_on_cpu = False`` tells the hardware policy to keep it in fp32 on a CPU even where
    bf16 is native: CPU autocast re-casts the 20 M-weight first layer every step, and its epochs
    took 4.446 s in bf16-mixed against 3.498 s in fp32 on the bf16 Xeon
    (``bench/results/train_cpu_native_bf16.json``). On a GPU the device decides (bf16-mixed).
    """

    bf16_pays_on_cpu = False

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int, hidden: int = 512,
        dropout: float = 0.5, input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Dropout(input_dropout), nn.Linear(n_bins * n_frames, hidden),
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Conv1D(nn.Module):
    """The seed's Conv1D: frequency bins as channels, two ``Conv1d`` + ReLU layers, temporal
    pooling, a linear output.

    Options the seed lacked: batch norm after each convolution, a max-pool of ``pool_size``
    frames between the two layers, mean+max global pooling over time and dropout before the
    output. Input ``(batch, bins, frames)``; output ``(batch, num_classes)``.
    """

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int, channels: tuple[int, int] = (256, 256),
        kernel_size: int = 5, batch_norm: bool = True, pool_size: int = 2, dropout: float = 0.3,
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(c_out)] if batch_norm else []
            return [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm),
                    *norm, nn.ReLU()]

        c1, c2 = channels
        pool = [nn.MaxPool1d(pool_size)] if pool_size > 1 else []
        self.features = nn.Sequential(*block(n_bins, c1), *pool, *block(c1, c2))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (identity, or 1x1 conv-BN where the channel count
    changes), then ReLU: ``(batch, c_in, H, W)`` -> ``(batch, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class CNN(nn.Module):
    """A 2-D CNN on log-mel: ``len(channels)`` blocks of two 3x3 conv-BN-ReLU layers and a 2x2
    average pool, then mean over frequency, mean+max over time, dropout and a linear output.

    ``residual`` adds a shortcut around each block's two convolutions (``ResidualBlock``; a 1x1
    projection where the width changes: 3.07% more FLOPs at 64 x 251, hop 320 at 16 kHz).
    ``freq_aware`` makes the input frequency-aware: each band gets its own BatchNorm statistics
    (low bands are far louder than high ones) and a second input channel holds the band's position,
    -1 (lowest) to 1 (highest), as in Koutini et al.'s frequency-aware CNNs, so that filters shared
    across frequency can still tell where they are (the head averages frequency away).
    ``channels_last`` stores weights and activations as NHWC, the layout oneDNN (CPUs) and cuDNN
    tensor cores prefer;
    ``AudioClassifier`` sets it for the hardware (``set_channels_last``).
    Input ``(batch, bins, frames)``; output ``(batch, num_classes)``.
    """

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int,
        channels: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.3, residual: bool = False,
        channels_last: bool = False, freq_aware: bool = False,
    ) -> None:
        super().__init__()
        self.freq_aware = freq_aware
        if freq_aware:
            self.band_norm = nn.BatchNorm1d(n_bins)
            self.register_buffer("band_position", torch.linspace(-1, 1, n_bins).view(1, 1, n_bins, 1),
                                 persistent=False)
        layers: list[nn.Module] = [] if freq_aware else [nn.BatchNorm2d(1)]
        c_in = 2 if freq_aware else 1
        for c in channels:
            if residual:
                layers.append(ResidualBlock(c_in, c))
            else:  # flat, so checkpoints of the plain CNN keep their keys
                for c_from in (c_in, c):
                    layers += [nn.Conv2d(c_from, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            layers.append(nn.AvgPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, num_classes))
        self.set_channels_last(channels_last)

    def set_channels_last(self, on: bool) -> None:
        self.memory_format = torch.channels_last if on else torch.contiguous_format
        self.features.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freq_aware:
            x = self.band_norm(x).unsqueeze(1)
            position = self.band_position.to(x.dtype).expand(x.shape[0], 1, -1, x.shape[-1])
            x = torch.cat([x, position], dim=1)
        else:
            x = x.unsqueeze(1)
        x = x.contiguous(memory_format=self.memory_format)
        h = self.features(x).mean(2)  # (batch, channels, frames)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))
