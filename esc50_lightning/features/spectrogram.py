"""Spectrogram front ends: ``linear``, ``log_freq`` and ``log_mel``, all in dB per example."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torchaudio.functional as AF
from torch import nn

from esc50_lightning.features.conv_stft import ConvPowerSpectrogram

FeatureKind = Literal["linear", "log_freq", "log_mel"]
FEATURE_KINDS: tuple[str, ...] = ("linear", "log_freq", "log_mel")


def power_to_db(power: torch.Tensor, top_db: float | None = 80.0, amin: float = 1e-10) -> torch.Tensor:
    """``10 log10(power)`` floored at ``top_db`` below each example's own maximum.

    The maximum is taken over the last two dimensions (frequency, time) of each example, so a
    clip's features never depend on its batch mates (torchaudio's ``AmplitudeToDB`` takes the
    maximum over the whole batch). Matches ``librosa.power_to_db(S, ref=1.0)`` clip by clip.
    """
    db = 10.0 * torch.log10(power.clamp_min(amin))
    if top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return db


def log_frequency_fbanks(
    n_freqs: int, f_min: float, f_max: float, n_bins: int, sample_rate: int
) -> torch.Tensor:
    """Triangular filters with log-spaced centres, shape ``(n_freqs, n_bins)``.

    Bin edges are ``n_bins + 2`` geometrically spaced frequencies from ``f_min`` to ``f_max``;
    filter k rises from edge k to its centre k+1 and falls to edge k+2 (constant-Q, like the
    notes of a scale). Each side is at least one FFT bin wide, so low filters narrower than the
    FFT resolution interpolate between their neighbouring bins instead of going empty. Each
    filter sums to 1: a log-frequency bin holds the average power of its band.
    """
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    df = freqs[1] - freqs[0]
    edges = torch.logspace(math.log10(f_min), math.log10(f_max), n_bins + 2, dtype=torch.float64)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    left = (mid - lo).clamp_min(df)
    right = (hi - mid).clamp_min(df)
    f = freqs[:, None]
    rise = (f - (mid - left)) / left
    fall = ((mid + right) - f) / right
    fb = torch.minimum(rise, fall).clamp_min(0)
    return (fb / fb.sum(dim=0, keepdim=True)).float()


class PowerSpectrogram(nn.Module):
    """``|STFT|^2`` of ``(..., samples)``: ``(..., n_fft // 2 + 1, frames)``, centred, zero-padded.

    Same numbers as ``torchaudio.transforms.Spectrogram(power=2, pad_mode="constant")``, which
    takes a square root (``abs``) and squares it again; this adds re^2 + im^2 directly.
    """

    def __init__(self, n_fft: int, win_length: int | None, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length or n_fft, hop_length
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        shape = wave.shape
        spec = torch.stft(wave.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length,
                          self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # 2.8x faster than summing view_as_real's last dim
        return power.reshape(*shape[:-1], *power.shape[-2:])


class SpectrogramFrontend(nn.Module):
    """Waveform ``(..., samples)`` to a dB spectrogram ``(..., bins, frames)``.

    Args:
        kind: ``linear`` (STFT power, ``n_fft // 2 + 1`` bins), ``log_freq`` (power averaged over
            ``n_mels`` log-spaced triangular bands, see ``log_frequency_fbanks``) or ``log_mel``
            (Slaney mel power, as librosa's defaults).
        sample_rate: rate of the input waveform, Hz.
        n_fft: FFT size; win_length: Hann window length (default ``n_fft``); hop_length: hop.
        n_mels: number of mel or log-frequency bins (unused by ``linear``).
        f_min, f_max: band of the mel or log bins (``f_max`` default: Nyquist; ``log_freq``
            needs ``f_min > 0`` and uses 32.7 Hz, the note C1, when given 0).
        top_db: per-example dynamic range floor in dB (``None``: no floor).
    Frames are centred (``1 + samples // hop_length`` of them), zero-padded as in librosa.
    """

    def __init__(
        self,
        kind: FeatureKind = "log_mel",
        sample_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 512,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
    ) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}")
        self.kind, self.top_db = kind, top_db
        self.stft = PowerSpectrogram(n_fft, win_length, hop_length)
        n_freqs, f_max = n_fft // 2 + 1, f_max or sample_rate / 2
        if kind == "log_mel":
            fb = AF.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, "slaney", "slaney")
        elif kind == "log_freq":
            fb = log_frequency_fbanks(n_freqs, f_min or 32.7, f_max, n_mels, sample_rate)
        else:
            fb = None
        self.register_buffer("fbanks", fb, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.stft(wave.float())
        if self.fbanks is not None:
            power = torch.matmul(power.transpose(-1, -2), self.fbanks).transpose(-1, -2)
        return power_to_db(power, self.top_db)

    def export_friendly(self) -> SpectrogramFrontend:
        """Swap ``torch.stft`` (complex) for ``ConvPowerSpectrogram`` (real ops, ONNX-exportable), in place."""
        stft = self.stft
        self.stft = ConvPowerSpectrogram(stft.n_fft, stft.win_length, stft.hop_length)
        return self

    def bin_frequencies(self, sample_rate: int) -> torch.Tensor:
        """Centre frequency (Hz) of each output bin, for plot axes."""
        n_freqs = self.stft.n_fft // 2 + 1
        freqs = torch.linspace(0, sample_rate / 2, n_freqs)
        if self.fbanks is None:
            return freqs
        return (freqs[:, None] * self.fbanks).sum(0) / self.fbanks.sum(0)


def num_frames(num_samples: int, hop_length: int) -> int:
    return 1 + num_samples // hop_length


@torch.no_grad()
def compute_features(
    frontend: nn.Module, waves: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 128
) -> torch.Tensor:
    """Apply ``frontend`` to ``(clips, samples)`` in batches on ``device``; result on the CPU."""
    frontend = frontend.to(device)
    out = None
    for i in range(0, len(waves), batch_size):
        part = frontend(waves[i : i + batch_size].to(device)).cpu()
        if out is None:  # written in place: no second copy of all features
            out = torch.empty(len(waves), *part.shape[1:], dtype=part.dtype)
        out[i : i + len(part)] = part
    return out if out is not None else torch.empty(0)
