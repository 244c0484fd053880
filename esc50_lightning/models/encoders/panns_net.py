"""The PANNs networks as published (``pytorch/models.py`` of ``qiuqiangkong/audioset_tagging_cnn``,
front end as in ``torchlibrosa``), under the published names, so that the Zenodo checkpoints' state
dicts load with no key left over or missing. Which models there are, and their files: ``panns``.

The front end lives in the state dict: reflect-padded STFT as two frozen ``Conv1d`` (window
``n_fft``, Hann), power, Slaney mel filters (``melW``), ``10 log10`` with amin 1e-10, ref 1 and no
top_db, then ``bn0`` over the mel bins.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

if TYPE_CHECKING:
    from esc50_lightning.models.encoders.panns import PANNsSpec

AUDIOSET_CLASSES = 527
MEL_BINS = 64


# ----- the front end, under the published names (torchlibrosa's Spectrogram and LogmelFilterBank) -----
class _STFT(nn.Module):
    """``|STFT|`` as two frozen ``Conv1d`` over the reflect-padded wave (``conv_real``, ``conv_imag``:
    the DFT rows times a periodic Hann window), exportable to ONNX as it is."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        t = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k * t / n_fft
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(angle) * window)[:, None].float())
            self.conv_imag.weight.copy_((-torch.sin(angle) * window)[:, None].float())
        self.requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(wave[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x), self.conv_imag(x)  # (batch, bins, frames) each


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)
        return (real.square() + imag.square()).transpose(1, 2)[:, None]  # (batch, 1, frames, bins)


class _LogmelFilterBank(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        fb = AF.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
        self.melW = nn.Parameter(fb, requires_grad=False)  # (bins, mels), as librosa.filters.mel(...).T

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(mel.clamp_min(1e-10))  # ref 1, amin 1e-10, no top_db


# ----- the network -----
def _init_layer(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        layer.bias.data.fill_(0.0)


class _ConvBlock(nn.Module):
    """Cnn10/Cnn14's block: two 3x3 conv-BN-ReLU layers, then average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        _init_layer(self.conv1)
        _init_layer(self.conv2)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class _ConvBlock5x5(nn.Module):
    """Cnn6's block: one 5x5 conv-BN-ReLU layer, then average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        _init_layer(self.conv1)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class AudioSetNet(nn.Module):
    """The published network under the published names: front end, ``bn0``, conv blocks, ``fc1``
    and the 527-way ``fc_audioset``. Its ``state_dict()`` is the published checkpoint's ``model``."""

    def __init__(self, spec: PANNsSpec, width: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        channels = [max(1, round(c * width)) for c in spec.channels]
        self.spectrogram_extractor = _Spectrogram(spec.window, spec.hop)
        self.logmel_extractor = _LogmelFilterBank(spec.sample_rate, spec.window, MEL_BINS, spec.fmin, spec.fmax)
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        block = _ConvBlock if spec.block == "3x3" else _ConvBlock5x5
        c_in = 1
        for i, c in enumerate(channels, 1):
            setattr(self, f"conv_block{i}", block(c_in, c))
            c_in = c
        self.blocks = len(channels)
        # Cnn14 pools 2x2 after every block but the last; Cnn6 and Cnn10 after each of their four
        self.pools = [2] * self.blocks if self.blocks == 4 else [2] * (self.blocks - 1) + [1]
        self.fc1 = nn.Linear(c_in, c_in)
        self.fc_audioset = nn.Linear(c_in, AUDIOSET_CLASSES)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, frames, 64)`` log-mel, normalised by ``bn0`` over the mel bins."""
        with torch.autocast(wave.device.type, enabled=False):  # the publisher's fp32 front end, in any precision
            x = self.logmel_extractor(self.spectrogram_extractor(wave.float()))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, frames, 64)`` (after ``logmel``) to the ``fc1`` embedding (after ReLU)."""
        for i, pool in enumerate(self.pools, 1):
            x = F.dropout(getattr(self, f"conv_block{i}")(x, pool), 0.2, self.training)
        x = x.mean(3)
        x = x.amax(2) + x.mean(2)
        x = F.dropout(x, 0.5, self.training)
        return F.relu(self.fc1(x))
