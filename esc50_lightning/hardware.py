"""How to run on the hardware at hand: numeric precision, memory layout and compilation.

Decided here once and imported by the trainer, the classifier and the benchmarks. An explicit
user setting always wins; ``"auto"`` asks this module. The rules, and the measurements behind
them (README, "Hardware policy"):

- precision: ``bf16-mixed`` where bfloat16 is native (CUDA with bf16 support; CPUs with
  AVX-512 BF16 or AMX), ``16-mixed`` on CUDA without bf16, else ``32-true``. PyTorch's CPU
  autocast *emulates* bf16 on other CPUs, several times slower than fp32 (the Conv1D: 2.726x on
  an AVX-512 CPU; a user's AVX2-only CPU took about 70 s per epoch against 5-6 s).
- channels-last (NHWC) for 2-D CNNs: on for CPUs and CUDA. The CNN's epochs measured 1.458x
  faster with it in native bf16 (a CPU with AMX or AVX-512 BF16) and 1.589x at fp32 (an
  AVX-512 CPU without bf16).
- ``torch.compile``: on for CPUs (where inductor finds a C++ compiler) and CUDA; it measured
  1.164x faster epochs in native bf16 and 1.738x at fp32 on the same two CPUs. It costs a fixed
  compilation in the first batches, so short runs (smoke tests) turn it off explicitly.
Elsewhere (MPS) both stay off: not measured.

The host allocator setting lives in ``allocator``, what a result records about the machine in
``provenance``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("esc50_lightning")

AUTO = "auto"
BF16_EMULATED_WARNING = (
    "precision {precision} on a CPU without native bf16 (no AVX-512 BF16, no AMX): PyTorch emulates "
    "bf16 here, several times slower than --trainer.precision 32-true"
)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says: ``Hardware.name``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> dict[str, bool]:
    """The CPU capabilities that decide speed: AVX2, AVX-512, AVX-512 BF16, AMX (bf16 tiles)."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return {
        "avx2": bool(caps.get("avx2")),
        "avx512": bool(caps.get("avx512_f")),
        "avx512_bf16": bool(caps.get("avx512_bf16")),
        "amx": bool(caps.get("amx_bf16") or caps.get("amx_tile")),
    }


def cpu_has_native_bf16(flags: dict[str, bool] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return flags["avx512_bf16"] or flags["amx"]


@dataclass(frozen=True)
class Hardware:
    """Where a run trains: ``device`` is ``cuda``, ``mps`` or ``cpu``; ``native_bf16`` whether
    bfloat16 arithmetic is done in hardware there."""

    device: str
    name: str
    native_bf16: bool
    cpu_flags: dict[str, bool]

    def describe(self) -> str:
        flags = ", ".join(k.upper().replace("_", "-") for k, v in self.cpu_flags.items() if v) or "none listed"
        if self.device == "cuda":
            return f"CUDA {self.name} ({'with' if self.native_bf16 else 'without'} bf16)"
        return f"{self.device.upper()} {self.name} ({flags}; bf16 {'native' if self.native_bf16 else 'emulated'})"


def detect(accelerator: str = AUTO) -> Hardware:
    """The hardware a Trainer with this ``accelerator`` setting trains on."""
    flags = cpu_flags()
    wants_cuda = accelerator in (AUTO, "gpu", "cuda")
    if wants_cuda and torch.cuda.is_available():
        # torch >= 2.3 counts emulated bf16 as supported unless asked not to: pre-Ampere GPUs
        # (V100, T4) would get slow emulated bf16-mixed instead of 16-mixed
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Hardware("cuda", torch.cuda.get_device_name(0), native, flags)
    mps = getattr(torch.backends, "mps", None)
    if accelerator in (AUTO, "gpu", "mps") and mps is not None and mps.is_available():
        return Hardware("mps", "Apple GPU", False, flags)
    return Hardware("cpu", cpu_name(), cpu_has_native_bf16(flags), flags)


def choose_precision(hw: Hardware) -> tuple[str, str]:
    """The precision for ``hw`` and why, in words."""
    if hw.device == "cuda":
        return ("bf16-mixed", "CUDA with bf16") if hw.native_bf16 else ("16-mixed", "CUDA without bf16")
    if hw.device == "cpu" and hw.native_bf16:
        return "bf16-mixed", "CPU with native bf16 (AVX-512 BF16 or AMX)"
    if hw.device == "cpu":
        return "32-true", "CPU without native bf16 (bf16 would be emulated)"
    return "32-true", f"{hw.device} (mixed precision not measured to pay there)"


def resolve_precision(requested: str | int | None, hw: Hardware, announce: bool = True) -> str | int | None:
    """``auto`` (or unset) -> ``choose_precision``, logged in one line; anything else is kept,
    with one warning line when it asks for bf16 on a CPU that would emulate it. ``announce``:
    whether to say so (one process of a DDP run does)."""
    if requested in (None, AUTO):
        precision, why = choose_precision(hw)
        if announce:
            log.info(f"precision {precision}: {why}; {hw.describe()}")
        return precision
    if announce and hw.device == "cpu" and not hw.native_bf16 and "bf16" in str(requested):
        log.warning(BF16_EMULATED_WARNING.format(precision=requested))
    return requested


def has_cpp_compiler() -> bool:
    """Inductor compiles CPU kernels with a C++ compiler; without one ``torch.compile`` fails."""
    return any(shutil.which(cc) for cc in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


def channels_last_pays(device: torch.device | str) -> bool:
    return torch.device(device).type in ("cpu", "cuda")


def compile_pays(device: torch.device | str) -> bool:
    device_type = torch.device(device).type
    return device_type == "cuda" or (device_type == "cpu" and has_cpp_compiler())


SWITCH_RULES = {"channels_last": channels_last_pays, "compile": compile_pays}


def resolve_switch(name: str, requested: bool | str, device: torch.device | str) -> bool:
    """A hardware-bound on/off switch (``channels_last``, ``compile``): ``auto`` asks its rule."""
    return SWITCH_RULES[name](device) if requested == AUTO else bool(requested)
