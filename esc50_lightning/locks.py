"""Exclusive file locks between processes: one home for the dataset's, the sweep's, the caches'
and the weights' locks, on ``filelock``.

``filelock`` takes the operating system's lock where there is one (``flock`` on POSIX, ``msvcrt``
on Windows): the kernel drops it when its holder exits, however it exits (``kill -9`` too), so a
lock file left behind never blocks anyone. Where a filesystem or platform has none, it falls back
to a lock file of its own (created exclusively, holding the holder's pid and host; one whose
holder is gone is broken). An OS-locked file is never truncated by a process that waits for it:
what its holder wrote in it (the sweep writes who holds it) is there for whoever is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, SoftFileLock, Timeout


@contextmanager
def file_lock(path: str | Path, busy: Callable[[], None]) -> Iterator[int | None]:
    """Hold an exclusive lock on ``path`` (created if needed) while the body runs; yields its file
    descriptor, for the holder to write in who holds it, or ``None`` where filelock fell back to
    a lock file of its own (its content is filelock's: pid and host). When another process holds
    it, ``busy()`` is called first: it raises to refuse, or returns to wait for the lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, mode=0o644)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        busy()
        lock.acquire()
    try:
        # filelock keeps the descriptor it locked in its context (3.x and 4.x alike)
        soft = isinstance(lock, SoftFileLock) or getattr(lock._context, "soft_fallback", False)
        yield None if soft else lock._context.lock_file_fd
    finally:
        lock.release()
