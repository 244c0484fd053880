"""Decode clips (soundfile), mix to mono, resample (torchaudio), fix the length.

All 2,000 clips of ESC-50 become one ``(clips, samples)`` float32 tensor; ``data.cache`` keeps it
on disk so that later runs memory-map it instead of decoding again.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from esc50_lightning.data.integrity import declared_length_problem
from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.pipeline import CLIP_SECONDS

DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)  # what soundfile raises on bad bytes


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any file soundfile understands as ``(frames, channels)`` float32 and its rate.

    Raises ``ESC50Error`` naming the file for missing, empty, corrupt, truncated (shorter than
    its header declares) or non-finite audio.
    """
    path = Path(path)
    if not path.exists():
        raise ESC50Error(f"{path}: file not found")
    if path.is_dir():
        raise ESC50Error(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise ESC50Error(f"{path}: empty file")
    problem = declared_length_problem(path)
    if problem:
        raise ESC50Error(f"{path}: {problem}")
    return _decode(path, str(path))


def read_audio_bytes(data: bytes, name: str = "upload") -> tuple[np.ndarray, int]:
    """``read_audio`` of a file held in memory (an upload), with the same checks; ``name`` labels
    the error lines (never opened: the bytes are the whole file)."""
    if not data:
        raise ESC50Error(f"{name}: empty file")
    buffer = io.BytesIO(data)
    problem = declared_length_problem(buffer)
    if problem:
        raise ESC50Error(f"{name}: {problem}")
    return _decode(buffer, name)


def declared_seconds(data: bytes, name: str = "upload") -> float:
    """The duration a file in memory declares in its header, read without decoding the audio."""
    try:
        info = sf.info(io.BytesIO(data))
    except DECODE_ERRORS as err:
        raise _cannot_decode(name, err) from None
    return info.frames / info.samplerate if info.samplerate else 0.0


def _cannot_decode(name: str, err: Exception) -> ESC50Error:
    reason = str(err).split(": ")[-1].strip() or type(err).__name__
    return ESC50Error(f"{name}: cannot decode audio ({reason})")


def _decode(source: str | Path | BinaryIO, path: str) -> tuple[np.ndarray, int]:
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except DECODE_ERRORS as err:
        raise _cannot_decode(path, err) from None
    if data.shape[0] == 0:
        raise ESC50Error(f"{path}: no audio samples")
    if not np.isfinite(data).all():
        raise ESC50Error(f"{path}: contains NaN or infinite samples")
    return data, int(rate)


def fix_length(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad or trim the last dimension to ``num_samples``."""
    n = wave.shape[-1]
    if n >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - n))


def load_clip(path: str | Path | bytes, sample_rate: int, num_samples: int | None = None) -> torch.Tensor:
    """One file (a path, or a whole file's bytes) as a mono float32 tensor ``(samples,)`` at
    ``sample_rate``, optionally fixed length."""
    data, rate = read_audio_bytes(path) if isinstance(path, bytes) else read_audio(path)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return fix_length(wave, num_samples) if num_samples else wave


def decode_clips(
    paths: list[Path], sample_rate: int, seconds: float = CLIP_SECONDS, workers: int | None = None
) -> torch.Tensor:
    """Decode many files into one ``(clips, sample_rate * seconds)`` float32 tensor (see ``decode_and_resample``)."""
    return decode_and_resample(paths, sample_rate, seconds, workers)[0]


def decode_and_resample(
    paths: list[Path], sample_rate: int, seconds: float = CLIP_SECONDS, workers: int | None = None
) -> tuple[torch.Tensor, bool]:
    """Decode many files into one ``(clips, sample_rate * seconds)`` float32 tensor, and whether
    any clip had to be resampled.

    Files are read in parallel threads (libsndfile releases the GIL) and written straight into
    their row of the output; clips at another rate are then resampled in batches, one batch per
    source rate.
    """
    num_samples = int(round(sample_rate * seconds))
    out = torch.zeros(len(paths), num_samples)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}

    def read_into(i: int) -> None:
        data, rate = read_audio(paths[i])
        mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
        if rate == sample_rate:
            n = min(num_samples, mono.shape[0])
            out[i, :n] = torch.from_numpy(mono[:n])
        else:
            pending.setdefault(rate, []).append((i, mono))

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(read_into, range(len(paths))))
    for rate, clips in pending.items():
        src_len = int(round(rate * seconds))
        for start in range(0, len(clips), 256):
            chunk = clips[start : start + 256]
            batch = torch.stack([fix_length(torch.from_numpy(m), src_len) for _, m in chunk])
            out[[i for i, _ in chunk]] = fix_length(AF.resample(batch, rate, sample_rate), num_samples)
    return out, bool(pending)
