"""The hardware policy, with capability detection replaced: what each machine gets."""

import logging
import platform

import pytest

from esc50_lightning import allocator, hardware, provenance
from esc50_lightning.hardware import Hardware, choose_precision, resolve_precision, resolve_switch

NO_BF16 = {"avx2": True, "avx512": False, "avx512_bf16": False, "amx": False}
AMX = {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": True}


def cpu(native: bool) -> Hardware:
    return Hardware("cpu", "test CPU", native, AMX if native else NO_BF16)


@pytest.mark.parametrize(("hw", "expected"), [
    (cpu(False), "32-true"),
    (cpu(True), "bf16-mixed"),
    (Hardware("cuda", "test GPU", True, NO_BF16), "bf16-mixed"),
    (Hardware("cuda", "old GPU", False, NO_BF16), "16-mixed"),
    (Hardware("mps", "Apple GPU", False, NO_BF16), "32-true"),
])
def test_auto_precision_per_machine(hw, expected, caplog):
    with caplog.at_level(logging.INFO, "esc50_lightning"):
        assert resolve_precision("auto", hw) == expected
    (line,) = caplog.messages  # one line: what and why
    assert line.startswith(f"precision {expected}: ") and hw.name in line


def test_native_bf16_from_cpu_flags(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: dict(NO_BF16))
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    assert hardware.detect("cpu").native_bf16 is False
    assert choose_precision(hardware.detect("auto"))[0] == "32-true"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {**NO_BF16, "avx512": True, "avx512_bf16": True})
    assert hardware.detect("cpu").native_bf16 is True


def gpu_bf16(native: bool):
    """``torch.cuda.is_bf16_supported`` of a GPU: torch 2.11 counts emulated bf16 unless asked not
    to, so a pre-Ampere GPU (V100, T4) answers True by default and False without emulation."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    return is_bf16_supported


def test_cuda_detected_with_and_without_bf16(monkeypatch):
    import inspect

    real = inspect.signature(hardware.torch.cuda.is_bf16_supported).parameters
    assert inspect.signature(gpu_bf16(True)).parameters == real  # the model follows torch's function
    monkeypatch.setattr(hardware, "nvml_devices", lambda: None)  # where NVML cannot answer, torch is asked
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware.torch.cuda, "get_device_name", lambda i: "Fake GPU")
    for native, expected in ((True, "bf16-mixed"), (False, "16-mixed")):  # Ampere or later; V100, T4
        monkeypatch.setattr(hardware.torch.cuda, "is_bf16_supported", gpu_bf16(native))
        assert hardware.detect("auto").native_bf16 is native
        assert choose_precision(hardware.detect("auto"))[0] == expected
    assert hardware.detect("cpu").device == "cpu"  # an explicit CPU accelerator is honoured


def test_explicit_precision_wins_and_emulated_bf16_warns(caplog):
    with caplog.at_level(logging.INFO, "esc50_lightning"):
        assert resolve_precision("32-true", cpu(True)) == "32-true"
        assert resolve_precision("bf16-mixed", cpu(True)) == "bf16-mixed"
        assert not caplog.messages
        assert resolve_precision("bf16-mixed", cpu(False)) == "bf16-mixed"
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and "slower" in warning.getMessage()


def test_trainer_resolves_auto(monkeypatch):
    from esc50_lightning.training import ESC50Trainer

    monkeypatch.setattr(hardware, "cpu_flags", lambda: dict(NO_BF16))
    trainer = ESC50Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert trainer.precision == "32-true"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: dict(AMX))
    assert ESC50Trainer(accelerator="cpu", logger=False).precision == "bf16-mixed"
    assert ESC50Trainer(accelerator="cpu", logger=False, precision="32-true").precision == "32-true"


def test_layout_and_compile_switches(monkeypatch):
    assert resolve_switch("channels_last", "auto", "cpu") is True
    assert resolve_switch("channels_last", "auto", "cuda") is True
    assert resolve_switch("channels_last", "auto", "mps") is False
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: (8, 0))
    assert resolve_switch("compile", "auto", "cuda") is True
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: (6, 0))  # a P100: Triton refuses it
    assert resolve_switch("compile", "auto", "cuda") is False
    assert "compute capability 7.0, this GPU has 6.0" in hardware.compile_refusal("cuda")
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)  # no C++ compiler: inductor cannot build
    assert resolve_switch("compile", "auto", "cpu") is False
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/g++")
    assert resolve_switch("compile", "auto", "cpu") is True
    assert resolve_switch("compile", False, "cuda") is False and resolve_switch("channels_last", True, "mps") is True


REALLOCATE = """
import resource, torch
from esc50_lightning.allocator import keep_freed_memory
applied = keep_freed_memory()
def allocate_and_free(times):
    for _ in range(times):
        torch.ones(16 << 20)  # 64 MiB, freed at once, as a training step's activations are
allocate_and_free(8)  # warm-up: the first few blocks can be fenced in by small allocations made beside them
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
allocate_and_free(8)  # steady state: fresh pages each time, or the freed ones
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
@pytest.mark.parametrize("env", ["1", "0"])
def test_freed_tensor_memory_is_reused_without_page_faults(env, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv(allocator.KEEP_FREED_MEMORY_ENV, env)
    out = subprocess.run([sys.executable, "-c", REALLOCATE], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    assert applied == str(env == "1")
    if env == "1":  # 8 x 64 MiB is 131,072 pages of 4 KiB: reused, they do not fault in again
        assert int(faults) <= 16384  # at most one block of eight again (a stray allocation can fence one in)


def test_cpu_steal_share_reads_proc_stat_ticks(monkeypatch):
    start = provenance.parse_cpu_times("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert start == (40, 1000)  # user nice system idle iowait irq softirq steal; guest is within user
    assert provenance.parse_cpu_times("cpu  100 0 50 800 10 0 0\n") == (0, 960)  # kernels before steal
    monkeypatch.setattr(provenance, "cpu_times", lambda: (540, 2000))
    assert provenance.cpu_steal_share(start) == 0.5  # half of the last 1,000 ticks went to other guests
    assert provenance.cpu_steal_share(None) is None


def test_machine_info_records_the_policy_and_the_allocator():
    info = provenance.machine_info()
    assert info["auto_precision"] in ("32-true", "bf16-mixed", "16-mixed")
    assert info["malloc_keeps_freed_memory"] == allocator.freed_memory_kept()
