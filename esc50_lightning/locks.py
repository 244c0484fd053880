"""Exclusive file locks between processes (``flock``): one home for the dataset's and the sweep's.

The kernel drops a lock when its holder exits, however it exits (``kill -9`` too), so a lock file
left behind never blocks anyone. Where ``fcntl`` is missing (Windows) nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


@contextmanager
def file_lock(path: str | Path, busy: Callable[[], None]) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` (created if needed) while the body runs; yields its file
    descriptor. When another process holds it, ``busy()`` is called first: it raises to refuse,
    or returns to wait for the lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: the holder may have written in it
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy()
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock
