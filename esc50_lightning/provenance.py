"""What a timed result records about the machine it ran on: CPU, cores, flags, precision policy,
library versions, and how much CPU time the hypervisor gave to other guests meanwhile."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from esc50_lightning.allocator import freed_memory_kept
from esc50_lightning.hardware import choose_precision, cpu_has_native_bf16, cpu_name, detect


def parse_cpu_times(proc_stat: str) -> tuple[int, int]:
    """(stolen, total) CPU time in ticks from the ``cpu`` line of Linux's ``/proc/stat``: user,
    nice, system, idle, iowait, irq, softirq, steal (guest time is counted within user)."""
    ticks = [int(v) for v in proc_stat.split("\n", 1)[0].split()[1:9]]
    return ticks[7] if len(ticks) == 8 else 0, sum(ticks)


def cpu_times() -> tuple[int, int] | None:
    try:
        return parse_cpu_times(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return None  # not Linux


_CPU_TIMES_AT_START = cpu_times()


def cpu_steal_share(since: tuple[int, int] | None = _CPU_TIMES_AT_START) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other guests since ``since`` (by
    default since this module was imported, i.e. this run): on a shared host, timings stretch by up
    to 1 / (1 - share), so every timed result reports it. None off Linux."""
    now = cpu_times()
    if since is None or now is None or now[1] <= since[1]:
        return None
    return round((now[0] - since[0]) / (now[1] - since[1]), 3)


def machine_info() -> dict:
    """What a benchmark result says about the machine it ran on."""
    hw = detect()
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_flags": hw.cpu_flags, "cpu_native_bf16": cpu_has_native_bf16(hw.cpu_flags),
            "device": hw.describe(), "auto_precision": choose_precision(hw)[0], "torch": torch.__version__,
            "python": platform.python_version(), "malloc_keeps_freed_memory": freed_memory_kept()}
