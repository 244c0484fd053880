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
- ``torch.compile``: on for CPUs (where inductor finds a C++ compiler) and for CUDA GPUs of
  compute capability 7.0 and newer (Triton, its GPU backend, refuses older ones: a P100 or a
  K80 trains eagerly); it measured 1.164x faster epochs in native bf16 and 1.738x at fp32 on the
  same two CPUs. On CUDA it is NOT YET MEASURED: ``bench/gpu_check.py`` times it eager against
  compiled the first time a GPU is at hand, and decides. It costs a fixed compilation in the
  first batches, so short runs (smoke tests) turn it off explicitly.
Elsewhere (MPS) both stay off: not measured.

Nothing here creates a CUDA context: the GPUs are described through NVML (the driver's
management library, as Lightning counts them), so a Trainer built in a parent process leaves
Lightning free to fork its workers (``ddp_fork``, ``ddp_notebook``). On CUDA the process that
trains also gets TF32 matrix products and cuDNN's autotuner (``use_tensor_cores``).

The GPUs themselves (NVML, ``CUDA_VISIBLE_DEVICES``) are read in ``gpus``; the host allocator
setting lives in ``allocator``, what a result records about the machine in ``provenance``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

# CudaDevice and visible_cuda_devices are re-exported: imported from here before they had a module of their own
from esc50_lightning.gpus import CudaDevice, nvml_devices, visible_cuda_devices  # noqa: F401

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


def cuda_devices() -> list[CudaDevice] | None:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES`` applied to ``nvml_devices``), or
    ``None`` where NVML cannot say. Indices are taken in NVML's (PCI) order; where an id matches
    no GPU (a MIG instance's UUID) every GPU is returned: the policy takes the least capable."""
    every = nvml_devices()
    ids = visible_cuda_devices(strict=False)
    if every is None or ids is None:
        return every
    chosen = []
    for device_id in ids:
        if device_id.isdigit():
            if int(device_id) >= len(every):
                break  # CUDA ignores this id and every one after it
            chosen.append(every[int(device_id)])
            continue
        matches = [d for d in every if d.uuid.startswith(device_id)]
        if len(matches) != 1:
            return every
        chosen.append(matches[0])
    return chosen


@dataclass(frozen=True)
class Hardware:
    """Where a run trains: ``device`` is ``cuda``, ``mps`` or ``cpu``; ``native_bf16`` whether
    bfloat16 arithmetic is done in hardware there; ``capability``: the least CUDA compute
    capability among the visible GPUs (``None`` elsewhere, or where it could not be read)."""

    device: str
    name: str
    native_bf16: bool
    cpu_flags: dict[str, bool]
    capability: tuple[int, int] | None = None

    def describe(self) -> str:
        flags = ", ".join(k.upper().replace("_", "-") for k, v in self.cpu_flags.items() if v) or "none listed"
        if self.device == "cuda":
            capability = f"compute capability {'.'.join(map(str, self.capability))}, " if self.capability else ""
            return f"CUDA {self.name} ({capability}{'with' if self.native_bf16 else 'without'} bf16)"
        return f"{self.device.upper()} {self.name} ({flags}; bf16 {'native' if self.native_bf16 else 'emulated'})"


def detect(accelerator: str = AUTO) -> Hardware:
    """The hardware a Trainer with this ``accelerator`` setting trains on, found without
    creating a CUDA context (``nvml_devices``; Lightning has torch count GPUs through NVML too)."""
    flags = cpu_flags()
    wants_cuda = accelerator in (AUTO, "gpu", "cuda")
    if wants_cuda and torch.cuda.is_available():
        return cuda_hardware(flags)
    mps = getattr(torch.backends, "mps", None)
    if accelerator in (AUTO, "gpu", "mps") and mps is not None and mps.is_available():
        return Hardware("mps", "Apple GPU", False, flags)
    return Hardware("cpu", cpu_name(), cpu_has_native_bf16(flags), flags)


def cuda_hardware(flags: dict[str, bool]) -> Hardware:
    """The visible GPUs as one ``Hardware``: bf16 is native where every one of them has compute
    capability 8.0 or newer (Ampere). Read from NVML; only where NVML cannot answer is torch
    asked, which initialises CUDA in this process (then Lightning cannot fork workers)."""
    devices = cuda_devices()
    if devices:
        capability = min(d.capability for d in devices)
        names = sorted({d.name for d in devices})
        name = names[0] if len(names) == 1 else " + ".join(names)
        return Hardware("cuda", name, capability >= (8, 0), flags, capability)
    if torch.version.hip:  # ROCm: bf16 is native on every GPU torch supports there
        return Hardware("cuda", "ROCm GPU", True, flags)
    # torch >= 2.3 counts emulated bf16 as supported unless asked not to: pre-Ampere GPUs
    # (V100, T4) would get slow emulated bf16-mixed instead of 16-mixed
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return Hardware("cuda", torch.cuda.get_device_name(0), native, flags)


# networks whose class sets ``bf16_pays_on_cpu = False`` train in fp32 on a CPU even where bf16 is
# native (the MLP: its 20 M-weight layer is re-cast to bf16 every step, bench/results/train_cpu_native_bf16.json)
BF16_ON_CPU_ATTRIBUTE = "bf16_pays_on_cpu"


def choose_precision(hw: Hardware, network: object | None = None) -> tuple[str, str]:
    """The precision for ``hw`` (and ``network``, where it says bf16 does not pay it on a CPU)
    and why, in words."""
    if hw.device == "cuda":
        return ("bf16-mixed", "CUDA with bf16") if hw.native_bf16 else ("16-mixed", "CUDA without bf16")
    if hw.device == "cpu" and hw.native_bf16 and not getattr(network, BF16_ON_CPU_ATTRIBUTE, True):
        return "32-true", (f"{type(network).__name__} on a CPU: bf16 autocast re-casts its weights every step, "
                           "measured slower than fp32 even where bf16 is native")
    if hw.device == "cpu" and hw.native_bf16:
        return "bf16-mixed", "CPU with native bf16 (AVX-512 BF16 or AMX)"
    if hw.device == "cpu":
        return "32-true", "CPU without native bf16 (bf16 would be emulated)"
    return "32-true", f"{hw.device} (mixed precision not measured to pay there)"


def resolve_precision(requested: str | int | None, hw: Hardware, announce: bool = True,
                      network: object | None = None) -> str | int | None:
    """``auto`` (or unset) -> ``choose_precision``, logged in one line; anything else is kept,
    with one warning line when it asks for bf16 on a CPU that would emulate it. ``announce``:
    whether to say so (one process of a DDP run does)."""
    if requested in (None, AUTO):
        precision, why = choose_precision(hw, network)
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


TRITON_MIN_CAPABILITY = (7, 0)  # Triton, inductor's GPU backend, compiles for Volta and newer only


def cuda_capability(device: torch.device | str) -> tuple[int, int]:
    """The compute capability of CUDA ``device``; asked by the process that trains on it."""
    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def compile_refusal(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device``, or ``None`` when it can."""
    device_type = torch.device(device).type
    if device_type == "cuda":
        capability = cuda_capability(device)
        if capability < TRITON_MIN_CAPABILITY:
            return (f"torch.compile's GPU backend (Triton) needs compute capability "
                    f"{'.'.join(map(str, TRITON_MIN_CAPABILITY))}, this GPU has {'.'.join(map(str, capability))}")
        return None
    if device_type == "cpu":
        return None if has_cpp_compiler() else "inductor finds no C++ compiler (g++, clang++) to build CPU kernels"
    return f"compiling on {device_type} is not measured"


def compile_pays(device: torch.device | str) -> bool:
    """CPUs with a C++ compiler (measured: 1.164x-1.865x faster CNN epochs) and CUDA GPUs that
    Triton supports (not yet measured: ``bench/gpu_check.py`` decides)."""
    return compile_refusal(device) is None


SWITCH_RULES = {"channels_last": channels_last_pays, "compile": compile_pays}


def resolve_switch(name: str, requested: bool | str, device: torch.device | str) -> bool:
    """A hardware-bound on/off switch (``channels_last``, ``compile``): ``auto`` asks its rule."""
    return SWITCH_RULES[name](device) if requested == AUTO else bool(requested)


def use_tensor_cores(device: torch.device | str) -> None:
    """On CUDA: fp32 matrix products in TF32 (``high``), unless this process already chose a
    precision for them. Called by the process that trains (a flag of the process: Lightning's
    spawned workers do not inherit it). cuDNN's autotuner is the Trainer's ``benchmark``."""
    if torch.device(device).type == "cuda" and torch.get_float32_matmul_precision() == "highest":
        torch.set_float32_matmul_precision("high")
