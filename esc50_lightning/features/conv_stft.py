"""An STFT made of real-valued operators, so that ONNX can export the front end."""

from __future__ import annotations

import torch
from torch import nn


class ConvPowerSpectrogram(nn.Module):
    """STFT power as a strided ``conv1d`` with windowed cos/sin kernels: the same numbers as
    ``torchaudio.transforms.Spectrogram(power=2, center=True, pad_mode="constant")``, built from
    real-valued operators only, so ONNX can export it. Input ``(batch, samples)``."""

    def __init__(self, n_fft: int, win_length: int | None, hop_length: int) -> None:
        super().__init__()
        win_length = win_length or n_fft
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        window[left : left + win_length] = torch.hann_window(win_length, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        phase = 2 * torch.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft
        kernels = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window
        self.register_buffer("kernels", kernels.float()[:, None, :])
        self.n_fft, self.hop_length = n_fft, hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        x = nn.functional.pad(wave[:, None, :], (pad, pad))
        spec = nn.functional.conv1d(x, self.kernels, stride=self.hop_length)
        real, imag = spec.chunk(2, dim=1)
        return real**2 + imag**2
