"""The on-disk cache of decoded waveforms and features, under ONE key scheme.

A cached tensor is named by a hash of everything that produced it:

- the files' content stamps (``file_stamp``): name, size, modification time and a BLAKE2b hash of
  the first and last 64 KiB. The hash catches a file replaced with its modification time kept
  (``cp -p``, ``rsync -t``), which a size-and-mtime key missed; reading 128 KiB a file keeps a
  2,000-clip key well under a second;
- the settings that produced it (the sample rate and length for waveforms, the front end's
  settings for features);
- ``CODE_VERSION``, bumped whenever decoding or the front end's code changes what a cached tensor
  holds for the same files and settings.

A stale entry is never deleted, only no longer named: clear the cache folder to reclaim space.

Processes that find an entry missing at once (``sweep --jobs N`` on a fresh cache, DDP ranks)
build it once: the first takes the entry's lock file (``<entry>.lock``) and builds, the others
wait for the lock, then load what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from esc50_lightning.atomic import save_torch_atomic
from esc50_lightning.data.audio import CLIP_SECONDS, decode_and_resample
from esc50_lightning.locks import file_lock

log = logging.getLogger("esc50_lightning")

# 1: waveforms keyed by path, size and mtime. 2: content stamps; the front end moved into
# features.pipeline (FrontendSettings, InputPipeline), so features cached before are not reused.
CODE_VERSION = 2
STAMP_BYTES = 64 << 10  # hashed at each end of a file


def file_stamp(path: str | Path) -> tuple[str, int, int, str]:
    """``(name, size, mtime_ns, hash of the first and last STAMP_BYTES)``: what tells a changed
    file, reading at most ``2 * STAMP_BYTES`` of it."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        digest = hashlib.blake2b(f.read(STAMP_BYTES), digest_size=16)
        if st.st_size > 2 * STAMP_BYTES:
            f.seek(-STAMP_BYTES, os.SEEK_END)
        digest.update(f.read())  # the tail (the rest of a small file)
    return Path(path).name, st.st_size, st.st_mtime_ns, digest.hexdigest()


def content_key(paths: list[Path], workers: int | None = None) -> str:
    """One hash of the ordered files' stamps (read in parallel threads: hashing releases the GIL)."""
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        stamps = list(pool.map(file_stamp, paths))
    return hashlib.blake2b(json.dumps(stamps).encode(), digest_size=16).hexdigest()


def cache_key(content: str, settings: dict) -> str:
    """The key of a tensor made from files with ``content_key`` ``content`` under ``settings``."""
    blob = json.dumps([CODE_VERSION, content, settings], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_cached(path: Path) -> torch.Tensor | None:
    """A cached tensor, memory-mapped, or ``None`` when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, mmap=True, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError):
        return None


def build_lock(path: Path):
    """The lock that lets one process build cache entry ``path`` while the others wait."""
    lock = path.with_name(path.name + ".lock")
    return file_lock(lock, lambda: log.info(f"waiting for another process to build {path.name}"))


def cached_clips(
    paths: list[Path], sample_rate: int, cache_dir: str | Path, seconds: float = CLIP_SECONDS, always: bool = True,
    content: str | None = None,
) -> torch.Tensor:
    """``decode_and_resample``'s ``(clips, samples)`` tensor behind the cache (memory-mapped on a hit).

    With ``always=False`` a new cache file is written only when resampling was needed: decoding
    16-bit files at their own rate is as fast as reading back a float32 copy of them. ``content``:
    the files' ``content_key`` when the caller has it already.
    """
    content = content or content_key(paths)
    key = cache_key(content, {"sample_rate": sample_rate, "clip_seconds": seconds})
    path = Path(cache_dir) / f"waveforms-{sample_rate}-{key}.pt"
    waves = load_cached(path)
    if waves is not None:
        return waves
    with build_lock(path):
        waves = load_cached(path)  # built by the process that held the lock
        if waves is None:
            waves, resampled = decode_and_resample(paths, sample_rate, seconds)
            if always or resampled:
                save_torch_atomic(waves, path)
    return waves


def cached_features(
    paths: list[Path], settings: dict, cache_dir: str | Path, compute: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Features of every clip, in memory: read from the cache, or ``compute(waveforms)`` on the
    decoded clips (``settings["sample_rate"]``, ``settings["clip_seconds"]``) and cached.
    ``settings``: the front end's settings, all of them (they are the key)."""
    content = content_key(paths)
    kind = settings.get("feature", "features")
    path = Path(cache_dir) / f"features-{kind}-{cache_key(content, settings)}.pt"
    features = load_cached(path)
    if features is not None:
        return features.clone()  # memory-mapped -> RAM: batches are random slices
    with build_lock(path):
        features = load_cached(path)  # built by the process that held the lock
        if features is not None:
            return features.clone()
        rate, seconds = settings["sample_rate"], settings.get("clip_seconds", CLIP_SECONDS)
        features = compute(cached_clips(paths, rate, cache_dir, seconds, always=False, content=content))
        save_torch_atomic(features, path)
    return features
