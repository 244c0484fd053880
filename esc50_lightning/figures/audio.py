"""Figures of clips: waveform, spectrograms of each kind, window/hop trade-off, pooling."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from esc50_lightning.features import SpectrogramFrontend, pool  # noqa: E402

LINE = matplotlib.colormaps["magma"](0.3)  # line colours from the palette the PNGs are saved with
ACCENT = matplotlib.colormaps["magma"](0.65)
KIND_TITLES = {"linear": "linear-frequency power", "log_freq": "log-frequency", "log_mel": "log-mel"}


def show_spectrogram(ax: Axes, spec: torch.Tensor, freqs: torch.Tensor, seconds: float, title: str,
                     colorbar: bool = True):
    """Draw ``(bins, frames)`` dB values with time (s) across and bin centre frequencies (Hz) up."""
    bins = spec.shape[0]
    im = ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, bins))
    frequency_ticks(ax, freqs)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="power (dB)", pad=0.01)
    return im


NICE_HZ = (0, 50, 100, 200, 500, 1000, 2000, 4000, 8000, 16000)


def frequency_ticks(ax: Axes, freqs: torch.Tensor) -> None:
    """Label the bin axis with round frequencies placed where they fall between bin centres."""
    centres = freqs.numpy()
    linear = np.allclose(np.diff(centres), centres[1] - centres[0], rtol=1e-3)
    top = centres[-1]
    hz = np.arange(0, top + 1, 1000 if top <= 8000 else 2000) if linear else [f for f in NICE_HZ if f <= top]
    hz = [f for f in hz if centres[0] <= f <= top]
    where = np.interp(hz, centres, np.arange(len(centres))) + 0.5
    keep, last = [], -np.inf
    for i in range(len(hz) - 1, -1, -1):  # from the top down, drop ticks crowding the one above
        if last - where[i] >= 0.07 * len(centres) or not keep:
            keep.insert(0, i)
            last = where[i]
    ax.set_yticks(where[keep], [f"{hz[i] / 1000:g}k" if hz[i] >= 1000 else f"{hz[i]:g}" for i in keep])


def frontend(kind: str, sample_rate: int, n_fft: int = 1024, win_length: int | None = None,
             hop_length: int = 256, n_mels: int = 128) -> SpectrogramFrontend:
    return SpectrogramFrontend(kind, sample_rate, n_fft, win_length, hop_length, n_mels)


def waveform_figure(clips: list[tuple[torch.Tensor, str]], sample_rate: int, hop_length: int = 256,
                    n_mels: int = 128) -> Figure:
    """Each clip as a row: waveform (amplitude over seconds) and its log-mel spectrogram."""
    rows = len(clips)
    fig, axes = plt.subplots(rows, 2, figsize=(12, 2.6 * rows + 0.4), squeeze=False, layout="constrained")
    front = frontend("log_mel", sample_rate, hop_length=hop_length, n_mels=n_mels)
    freqs = front.bin_frequencies(sample_rate)
    for (wave, name), (left, right) in zip(clips, axes):
        seconds = wave.shape[-1] / sample_rate
        left.plot(np.arange(wave.shape[-1]) / sample_rate, wave.numpy(), lw=0.4, color=LINE)
        left.set_xlim(0, seconds)
        left.set_xlabel("time (s)")
        left.set_ylabel("amplitude")
        left.set_title(f"{name}: waveform", fontsize=10)
        show_spectrogram(right, front(wave), freqs, seconds, f"{name}: log-mel ({n_mels} bands, hop {hop_length})")
    return fig


def class_grid_figure(clips: list[tuple[torch.Tensor, str]], sample_rate: int, cols: int = 5) -> Figure:
    """One small log-mel panel per class (the whole dataset at a glance)."""
    rows = -(-len(clips) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.5 * rows), squeeze=False, layout="constrained")
    front = frontend("log_mel", sample_rate, hop_length=512, n_mels=64)
    im = None
    for ax, (wave, name) in zip(axes.flat, clips):
        spec = front(wave)
        im = ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma",
                       extent=(0, wave.shape[-1] / sample_rate, 0, spec.shape[0]))
        ax.set_title(name.split(" (")[0], fontsize=9)
        ax.set_xticks([0, 5] if wave.shape[-1] >= 5 * sample_rate else [])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(clips):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, label="power (dB)", shrink=0.5)
    fig.suptitle("One clip per class: log-mel, 64 bands, 0-5 s", fontsize=12)
    return fig


def representations_figure(wave: torch.Tensor, name: str, sample_rate: int, n_fft: int = 1024,
                           win_length: int | None = None, hop_length: int = 256, n_mels: int = 128) -> Figure:
    """The same clip as linear, log-frequency and log-mel spectrograms, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), layout="constrained")
    seconds = wave.shape[-1] / sample_rate
    for ax, kind in zip(axes, KIND_TITLES):
        front = frontend(kind, sample_rate, n_fft, win_length, hop_length, n_mels)
        spec = front(wave)
        title = f"{KIND_TITLES[kind]}: {spec.shape[0]} bins x {spec.shape[1]} frames"
        show_spectrogram(ax, spec, front.bin_frequencies(sample_rate), seconds, title)
    fig.suptitle(f"{name}: three representations (n_fft {n_fft}, win {win_length or n_fft}, hop {hop_length})")
    return fig


def resolution_grid_figure(wave: torch.Tensor, name: str, sample_rate: int,
                           windows: tuple[int, ...] = (256, 1024, 4096), hops: tuple[int, ...] = (128, 512),
                           kind: str = "linear") -> Figure:
    """Window length x hop length: longer windows sharpen frequency and blur time; smaller hops
    add frames (smoother, costlier). Each panel states its resolutions and frame count."""
    fig, axes = plt.subplots(len(hops), len(windows), figsize=(5.2 * len(windows), 3.6 * len(hops)),
                             squeeze=False, layout="constrained")
    seconds = min(wave.shape[-1] / sample_rate, 2.5)
    wave = wave[: int(seconds * sample_rate)]
    for r, hop in enumerate(hops):
        for c, win in enumerate(windows):
            front = frontend(kind, sample_rate, n_fft=win, hop_length=hop, n_mels=128)
            spec = front(wave)
            title = (f"win {win} ({1000 * win / sample_rate:.0f} ms), hop {hop} ({1000 * hop / sample_rate:.0f} ms)\n"
                     f"{sample_rate / win:.1f} Hz/bin, {spec.shape[1]} frames")
            show_spectrogram(axes[r, c], spec, front.bin_frequencies(sample_rate), seconds, title,
                             colorbar=c == len(windows) - 1)
    fig.suptitle(f"{name}: {KIND_TITLES[kind]} spectrogram, first {seconds:g} s, window x hop trade-off")
    return fig


def pooling_figure(wave: torch.Tensor, name: str, sample_rate: int, hop_length: int = 512,
                   n_mels: int = 128) -> Figure:
    """A log-mel spectrogram and the vectors mean and max pooling over time make of it."""
    front = frontend("log_mel", sample_rate, hop_length=hop_length, n_mels=n_mels)
    spec = front(wave)
    freqs = front.bin_frequencies(sample_rate)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), width_ratios=[3, 1], layout="constrained")
    show_spectrogram(axes[0], spec, freqs, wave.shape[-1] / sample_rate, f"{name}: log-mel {tuple(spec.shape)}")
    bins = np.arange(spec.shape[0]) + 0.5
    for how, color in (("mean", LINE), ("max", ACCENT)):
        axes[1].plot(pool(spec[None], how)[0].numpy(), bins, color=color, label=f"{how} over time")
    axes[1].set_ylim(0, spec.shape[0])
    frequency_ticks(axes[1], freqs)
    axes[1].set_xlabel("power (dB)")
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_title(f"pooled: {spec.shape[0]}-dim vectors", fontsize=10)
    axes[1].legend(fontsize=8)
    return fig
