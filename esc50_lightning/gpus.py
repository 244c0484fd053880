"""The machine's NVIDIA GPUs, described without creating a CUDA context: NVML's list of them
(``nvml_devices``) and which of them ``CUDA_VISIBLE_DEVICES`` leaves visible
(``visible_cuda_devices``). The policy that reads them is ``hardware``."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from esc50_lightning.errors import ESC50Error


@dataclass(frozen=True)
class CudaDevice:
    """One NVIDIA GPU as NVML describes it: name, compute capability ``(major, minor)``, UUID."""

    name: str
    capability: tuple[int, int]
    uuid: str = ""


def visible_cuda_devices(value: str | None = None, strict: bool = True) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` (or ``value``) as a list of device ids, each stripped of spaces:
    ``None`` when unset (every GPU is visible), ``[]`` when it hides them all (empty, ``-1``).
    ``"0, 1"`` is ``["0", "1"]`` (CUDA itself reads ``" 1"`` as invalid and drops it); ids are
    indices or UUIDs (``GPU-...``, ``MIG-...``); empty entries are dropped. An entry that is
    neither is refused in one line rather than silently hiding every GPU after it (``strict``),
    or ends the list there, as CUDA reads it."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES") if value is None else value
    if raw is None:
        return None
    ids: list[str] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if entry.lstrip("-").isdigit() and entry.startswith("-"):
            break  # a negative index ends the list for CUDA: "-1" hides every GPU
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            if not strict:
                break
            raise ESC50Error(f"CUDA_VISIBLE_DEVICES={raw!r}: {entry!r} is neither a GPU index nor a UUID "
                             "(GPU-..., MIG-...); list them separated by commas, e.g. 0,1")
        if entry not in ids:
            ids.append(entry)
    return ids


def nvml_devices() -> list[CudaDevice] | None:
    """Every NVIDIA GPU of the machine, in NVML's order, whatever ``CUDA_VISIBLE_DEVICES`` says;
    ``None`` where NVML cannot answer (no NVIDIA driver, ROCm). NVML is the driver's management
    library: asking it creates no CUDA context, so Lightning may still fork worker processes."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
    except AttributeError:
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        devices = []
        for index in range(count.value):
            handle, major, minor = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_int()
            name, uuid = ctypes.create_string_buffer(96), ctypes.create_string_buffer(96)
            if (nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle))
                    or nvml.nvmlDeviceGetName(handle, name, 96) or nvml.nvmlDeviceGetUUID(handle, uuid, 96)
                    or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor))):
                return None
            devices.append(CudaDevice(name.value.decode(errors="replace"), (major.value, minor.value),
                                      uuid.value.decode(errors="replace")))
        return devices
    except AttributeError:  # an NVML too old for one of these calls
        return None
    finally:
        nvml.nvmlShutdown()
