"""Host memory: make glibc's malloc keep freed blocks, so training steps stop faulting pages in.

By default glibc maps every block over 32 MiB fresh from the kernel and unmaps it when freed, so
each training step faulted in its activations page by page again (about 200,000 page faults a
CNN step at batch 32). ``ESC50_KEEP_FREED_MEMORY=0`` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import platform

KEEP_FREED_MEMORY_ENV = "ESC50_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
_freed_memory_kept = False  # whether keep_freed_memory applied in this process


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from its heap and keep what is freed there
    (``mallopt``: no ``mmap`` for large blocks, heap trimmed only beyond 1 GiB free), so tensors
    freed in one training step are reused by later ones instead of being unmapped and faulted in
    again. Process-wide and idempotent; the process's memory stays near its peak. Returns whether
    it applies: glibc (Linux), and ``ESC50_KEEP_FREED_MEMORY`` not ``0``."""
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    global _freed_memory_kept
    try:
        libc = ctypes.CDLL("libc.so.6")
        _freed_memory_kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        _freed_memory_kept = False
    return _freed_memory_kept


def freed_memory_kept() -> bool:
    """Whether ``keep_freed_memory`` applied in this process (for provenance records)."""
    return _freed_memory_kept
