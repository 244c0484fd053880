"""Kaldi filter banks in batches: ``torchaudio.compliance.kaldi.fbank`` for ``(batch, samples)``.

torchaudio's function takes one waveform at a time; a Python loop over clips would run inside every
epoch. ``KaldiFbank`` computes the same numbers (same framing, DC removal, pre-emphasis, window,
power spectrum, mel banks and log floor) for a whole batch on its device, and swaps its FFT for
real-valued matrix products where ONNX needs them (``export_friendly``, or by itself in an ONNX
export).
"""

from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

WINDOWS = ("hanning", "hamming", "povey", "rectangular")


def kaldi_window(window_type: str, size: int) -> torch.Tensor:
    """Kaldi's frame windows (``torchaudio.compliance.kaldi``'s, symmetric)."""
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    if window_type == "povey":
        return torch.hann_window(size, periodic=False).pow(0.85)
    if window_type == "rectangular":
        return torch.ones(size)
    raise ValueError(f"unknown Kaldi window {window_type!r}; choose one of {WINDOWS}")


class KaldiFbank(nn.Module):
    """``(batch, samples)`` waveform to ``(batch, frames, num_mel_bins)`` log mel filter-bank energies,
    equal to ``torchaudio.compliance.kaldi.fbank`` of each row with the same arguments (no dither, no
    energy term, ``snip_edges``: ``1 + (samples - window) // shift`` frames; FFT size the window
    rounded up to a power of two). The defaults are ``ASTFeatureExtractor``'s call:
    ``fbank(wave, sample_frequency=16000, window_type="hanning", num_mel_bins=128)``.
    """

    def __init__(
        self, sample_rate: int = 16000, num_mel_bins: int = 128, frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0, window_type: str = "hanning", preemphasis: float = 0.97,
        low_freq: float = 20.0, high_freq: float = 0.0, remove_dc_offset: bool = True,
    ) -> None:
        super().__init__()
        self.window_size = int(sample_rate * frame_length_ms * 0.001)
        self.window_shift = int(sample_rate * frame_shift_ms * 0.001)
        self.n_fft = 1 << (self.window_size - 1).bit_length()
        self.preemphasis, self.remove_dc_offset = preemphasis, remove_dc_offset
        banks, _ = kaldi.get_mel_banks(num_mel_bins, self.n_fft, float(sample_rate), low_freq, high_freq,
                                       100.0, -500.0, 1.0)
        banks = nn.functional.pad(banks, (0, 1))  # the Nyquist bin, which Kaldi's banks leave out
        self.register_buffer("window", kaldi_window(window_type, self.window_size), persistent=False)
        self.register_buffer("mel_banks", banks.T.contiguous().float(), persistent=False)  # (freqs, bins)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
        phase = 2 * torch.pi * torch.arange(self.window_size, dtype=torch.float64)[:, None] * k / self.n_fft
        dft = torch.cat([torch.cos(phase), -torch.sin(phase)], dim=1).float()  # the zero-padded DFT's cos, -sin
        self.register_buffer("dft", dft, persistent=False)  # (window, 2 * freqs)
        self.real_valued = False  # export_friendly; an ONNX export switches by itself
        self.register_buffer("epsilon", torch.tensor(torch.finfo(torch.float).eps), persistent=False)

    def num_frames(self, samples: int) -> int:
        return max(0, 1 + (samples - self.window_size) // self.window_shift)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """The windowed frames ``(batch, frames, window)``, before the FFT."""
        wave = wave.float()
        if not self.exporting():
            x = wave.unfold(-1, self.window_size, self.window_shift)
        else:  # ONNX exports unfold with a wrong shape; a gather of fixed indices it exports right
            starts = torch.arange(self.num_frames(wave.shape[-1]), device=wave.device) * self.window_shift
            x = wave[..., starts[:, None] + torch.arange(self.window_size, device=wave.device)]
        if self.remove_dc_offset:
            x = x - x.mean(-1, keepdim=True)
        if self.preemphasis:
            x = x - self.preemphasis * torch.cat([x[..., :1], x[..., :-1]], dim=-1)
        return x * self.window

    def exporting(self) -> bool:
        return self.real_valued or torch.onnx.is_in_onnx_export()

    def power(self, frames: torch.Tensor) -> torch.Tensor:
        if not self.exporting():
            return torch.fft.rfft(frames, n=self.n_fft).abs().pow(2.0)
        real, imag = torch.matmul(frames, self.dft).chunk(2, dim=-1)
        return real.square() + imag.square()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        energies = torch.matmul(self.power(self.frames(wave)), self.mel_banks)
        return torch.maximum(energies, self.epsilon).log()

    def export_friendly(self) -> KaldiFbank:
        """Use a product with the zero-padded DFT's cos and -sin rows instead of the (complex) FFT, and a
        gather of fixed indices instead of ``unfold``: real-valued operators that ONNX exports (the same
        numbers within float rounding). An ONNX export does this by itself (``torch.onnx.is_in_onnx_export``)."""
        self.real_valued = True
        return self
