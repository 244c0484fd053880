"""Write a file so that readers see the old version or the new one, never half of one.

Each helper writes a temporary file made by ``tempfile.mkstemp`` in the target's own folder (so the
final ``os.replace`` is a rename within one filesystem, atomic on POSIX), then renames it over the
target. ``mkstemp`` picks a name no other writer holds: a name built from the pid alone repeats
across SLURM nodes and containers sharing one filesystem, and two such writers would interleave
their bytes in one temporary file. An interrupted write leaves at most a stray ``.<name>.*.tmp``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only read by setting)
os.umask(_UMASK)


def _as_path(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):  # the helpers differ in argument order, as their models do
        raise TypeError(f"atomic write: expected a path, got {type(path).__name__}")
    return Path(path)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write`` with a binary file open on a fresh temporary file beside ``path``, then
    rename it to ``path`` (folders made as needed). On any error the temporary file is removed
    and ``path`` is left as it was."""
    path = _as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data reaches the disk before the rename makes it visible
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(path: str | Path, obj: object) -> Path:
    """``obj`` as indented JSON with a final newline, atomically."""
    return write_text_atomic(_as_path(path), json.dumps(obj, indent=2) + "\n")


def save_torch_atomic(obj: object, path: str | Path) -> Path:
    """``torch.save(obj, path)``, atomically (argument order as ``torch.save``'s)."""
    return write_atomic(path, lambda f: torch.save(obj, f))
