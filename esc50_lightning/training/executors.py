"""Where the folds of a sweep run: here one after another, in N local processes, or on Ray.

Executors only decide *where*. Every fold runs ``run_fold``, which resumes from its last
checkpoint and writes its folder's result (``training.sweep.FoldDir``); the sweep then
aggregates the fold folders, whoever wrote them.
"""

from __future__ import annotations

import os
import queue
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.atomic import write_atomic, write_text_atomic
from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import visible_cuda_devices
from esc50_lightning.training.fold import run_fold
from esc50_lightning.training.sweep import FoldDir, token_file


def run_here(fit_args: list[str], folds: list[int], sweep_dir: Path, restart: bool = False) -> None:
    """One fold after another in this process (DDP strategies included)."""
    for fold in folds:
        result = run_fold(fit_args, FoldDir(sweep_dir, fold), restart)
        if rank_zero_only.rank == 0:
            print(f"fold {fold}: accuracy {result['accuracy']:.4f}")


def visible_gpus() -> list[str]:
    """The GPUs this process sees, by the ids a child's ``CUDA_VISIBLE_DEVICES`` takes, each
    stripped of spaces (``"0, 1"`` -> ``0`` and ``1``; CUDA would read ``" 1"`` as invalid and
    that fold would train on the CPU). Counted through NVML (Lightning makes torch count that
    way): the sweep's driver creates no CUDA context."""
    count = torch.cuda.device_count()
    ids = visible_cuda_devices()
    if ids is None:
        return [str(i) for i in range(count)]
    return ids[:count]


def trainer_devices(devices: object) -> int | None:
    """How many devices a ``--trainer.devices`` value asks for (``None``: ``auto``, ``-1``: all)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        if devices.strip() in ("auto", ""):
            return None
        parts = [p for p in devices.split(",") if p.strip()]
        if len(parts) > 1 or devices.strip().endswith(","):  # "0,1" or "0,": device indices
            return len(parts)
        devices = parts[0].strip() if parts else devices
    try:
        number = int(devices)
    except (TypeError, ValueError):
        return None
    return None if number == -1 else number


def check_parallel_folds(jobs: int, folds_per_gpu: int, trainer: dict, gpus: list[str]) -> None:
    """Refuse, in one line, ``--jobs`` that cannot run as asked: more folds at once than GPUs
    (times ``folds_per_gpu``), or folds in parallel that would each be a multi-device (DDP) run
    (each fold process sees one GPU, or a share of the CPU)."""
    if folds_per_gpu < 1:
        raise ESC50Error(f"--folds_per_gpu must be at least 1, got {folds_per_gpu}")
    if jobs == 1:
        return
    devices = trainer_devices(trainer.get("devices", "auto"))
    if devices is not None and devices > 1:
        raise ESC50Error(f"--jobs {jobs} runs each fold in a process of its own (one GPU each, or a share of the "
                         f"CPU); --trainer.devices {trainer.get('devices')} would make each of them a {devices}-device "
                         "DDP run: use --jobs for folds in parallel or --trainer.devices for one fold on several, "
                         "not both")
    on_gpus = gpus and str(trainer.get("accelerator", "auto")) not in ("cpu",)
    if on_gpus and jobs > len(gpus) * folds_per_gpu:
        seen = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}" \
            if "CUDA_VISIBLE_DEVICES" in os.environ else "CUDA_VISIBLE_DEVICES unset"
        share = -(-jobs // len(gpus))
        raise ESC50Error(f"--jobs {jobs} runs {jobs} folds at once, {folds_per_gpu} per GPU, and {len(gpus)} GPU"
                         f"{'s are' if len(gpus) > 1 else ' is'} visible ({seen}): use --jobs "
                         f"{len(gpus) * folds_per_gpu} or fewer, --folds_per_gpu {share} to share each GPU, or "
                         "--trainer.accelerator cpu")


def process_slots(jobs: int, folds_per_gpu: int = 1, accelerator: str = "auto") -> list[dict[str, str]]:
    """Environment of each of ``jobs`` parallel fold processes: an equal share of the CPU
    threads each, and one GPU each (round robin over the visible ones, ``folds_per_gpu`` folds
    sharing one) when there are GPUs and the accelerator is not ``cpu``."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    caps = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    gpus = visible_gpus() if str(accelerator) != "cpu" else []
    if gpus:
        check_parallel_folds(jobs, folds_per_gpu, {"accelerator": accelerator}, gpus)
        return [{**caps, "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(jobs)]
    return [dict(caps) for _ in range(jobs)]


def run_processes(fit_args: list[str], folds: list[int], sweep_dir: Path, jobs: int, restart: bool = False,
                  folds_per_gpu: int = 1, accelerator: str = "auto") -> None:
    """``jobs`` folds at a time, each in a process of its own (the hidden ``fold-worker``
    command), its console output appended to the fold's log file under one header line per
    attempt. A failed fold is reported the moment it fails; then no queued fold starts, the
    running ones finish (their results are kept), and one error names the failed folds."""
    slots: queue.Queue[dict[str, str]] = queue.Queue()
    for slot in process_slots(jobs, folds_per_gpu, accelerator):
        slots.put(slot)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    started: list[int] = []
    failed: list[int] = []
    stop = threading.Event()

    def one(fold: int) -> None:
        if stop.is_set():  # a fold failed: start no more
            return
        started.append(fold)
        slot = slots.get()
        log = FoldDir(sweep_dir, fold).log_file
        command = ["fold-worker", str(fold), str(sweep_dir), *(["--restart"] if restart else []), *fit_args]
        try:
            print(f"fold {fold}: started ({', '.join(f'{k}={v}' for k, v in slot.items())}; output in {log})",
                  flush=True)
            with open(log, "a") as out:  # a resumed fold keeps the output of its earlier attempts
                out.write(f"=== {datetime.now().isoformat(timespec='seconds')} esc50-lightning {shlex.join(command)}\n")
                out.flush()
                start = out.tell()
                code = subprocess.run([sys.executable, "-m", "esc50_lightning", *command], env={**os.environ, **slot},
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                stop.set()  # before this slot frees: no queued fold starts after a failure
                failed.append(fold)
                with open(log, errors="replace") as attempt:
                    attempt.seek(start)
                    lines = attempt.read().strip().splitlines() or ["(no output)"]
                print(f"fold {fold} failed (exit status {code}): {lines[-1]} (see {log})", file=sys.stderr, flush=True)
            else:
                print(f"fold {fold}: done", flush=True)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(one, fold) for fold in folds]:
            future.result()
    if failed:
        unstarted = [f for f in folds if f not in started]
        raise ESC50Error(f"fold{'s' * (len(failed) > 1)} {', '.join(map(str, sorted(failed)))} failed (see above)"
                         + (f"; not started: {', '.join(map(str, unstarted))}" if unstarted else "")
                         + "; the other folds' results are kept, and the same command resumes the sweep")


def inline_configs(fit_args: list[str]) -> list[str]:
    """``--config FILE`` -> ``--config <its YAML text>`` (jsonargparse takes either), so a worker
    on another machine needs no copy of the file."""
    out, args = [], iter(fit_args)
    for arg in args:
        if arg == "--config":
            out += [arg, Path(next(args)).read_text()]
        elif arg.startswith("--config="):
            out.append("--config=" + Path(arg.split("=", 1)[1]).read_text())
        else:
            out.append(arg)
    return out


def fold_files(fold_dir: FoldDir) -> dict[str, bytes]:
    """The fold folder's files but its checkpoints (big; they stay where the fold trained)."""
    root = fold_dir.path
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not fold_dir.is_checkpoint_file(p)}


def sees_driver_folder(sweep_dir: str | Path, token: str) -> bool:
    """Whether this machine sees the driver's sweep folder: its token file holds this run's token."""
    try:
        return token_file(sweep_dir).read_text().strip() == token
    except OSError:
        return False


def fold_task(fit_args: list[str], fold: int, sweep_dir: str, restart: bool = False,
              token: str | None = None) -> dict[str, bytes]:
    """A Ray task: run one fold and return its folder's files (all but checkpoints), so they reach
    the driver's sweep folder over any filesystem. Where the worker sees the driver's folder
    (``token``, a shared filesystem) the fold runs there: it resumes, and a changed setting is
    refused (``run_fold``), as in any executor. Elsewhere it runs in a fresh private folder, so a
    checkpoint an earlier, deleted sweep left at the same path on this machine is never resumed."""
    if token is None or sees_driver_folder(sweep_dir, token):
        fold_dir = FoldDir(Path(sweep_dir), fold)
        run_fold(fit_args, fold_dir, restart)
        return fold_files(fold_dir)
    with tempfile.TemporaryDirectory(prefix=f"esc50-fold{fold}-") as private:
        fold_dir = FoldDir(Path(private), fold)
        run_fold(fit_args, fold_dir, restart)
        return fold_files(fold_dir)


def save_fold_files(fold_dir: FoldDir, files: dict[str, bytes]) -> None:
    """Write a Ray task's returned files into the driver's fold folder, each atomically and the
    result last: an interrupted driver leaves whole files, and a result only beside the rest."""
    result = str(fold_dir.result_file.relative_to(fold_dir.path))
    for name in sorted(files, key=lambda name: name == result):
        target, blob = fold_dir.path / name, files[name]
        if not (target.exists() and target.read_bytes() == blob):  # a shared filesystem has it already
            write_atomic(target, lambda f, blob=blob: f.write(blob))


def ray_task_resources(resources: dict, folds: int, cpus: float | None, gpus: float | None) -> tuple[float, float]:
    """``(cpus, gpus)`` of each fold's Ray task: ``gpus`` defaults to 1 when the cluster has GPUs,
    else 0; ``cpus`` to the cluster's CPUs shared by the folds that can run at once (all of them
    on CPUs; as many as the GPUs hold with GPUs), at least 1. Ray caps a task's threads at its
    CPUs, so one CPU would train a GPU fold's input side single-threaded."""
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
    if cpus is None:
        at_once = folds if not gpus else min(folds, int(resources.get("GPU", 0) // gpus))
        cpus = max(1.0, float(resources.get("CPU", 1) // max(1, at_once)))
    return cpus, gpus


def run_ray(fit_args: list[str], folds: list[int], sweep_dir: Path, cpus: float | None, gpus: float | None,
            restart: bool = False) -> None:
    """Every fold a Ray task with ``cpus``/``gpus`` (defaults: ``ray_task_resources``). Joins
    the cluster at ``RAY_ADDRESS``, else starts a local one. Waits for every task: each fold's
    files are saved as it ends, a failed fold is reported as it fails, and one error at the end
    names every failed fold."""
    try:
        import ray
    except ImportError:
        raise ESC50Error("--executor ray needs Ray: pip install 'esc50-lightning[ray]'") from None
    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k == "ESC50_ROOT"}
        ray.init(runtime_env={"env_vars": env} if env else None, log_to_driver=False)
    resources = ray.cluster_resources()
    cpus, gpus = ray_task_resources(resources, len(folds), cpus, gpus)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(fold_task)
    args = inline_configs(fit_args)
    token = secrets.token_hex(16)  # fresh each run: no stale copy of the folder can hold it
    write_text_atomic(token_file(sweep_dir), token)
    refs = {task.remote(args, fold, str(Path(sweep_dir).resolve()), restart, token): fold for fold in folds}
    print(f"ray: {len(folds)} folds as tasks of {cpus:g} CPU and {gpus:g} GPU each on {resources}")
    failed, pending = [], list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            fold = refs[ref]
            try:
                files = ray.get(ref)
            except ray.exceptions.RayError as err:  # the task raised, or its worker died
                cause = getattr(err, "cause", None) or err
                lines = str(cause).strip().splitlines() or [type(cause).__name__]
                print(f"fold {fold} failed on Ray: {lines[-1]}", file=sys.stderr, flush=True)
                failed.append(fold)
                continue
            save_fold_files(FoldDir(sweep_dir, fold), files)
            print(f"fold {fold}: done", flush=True)
    if failed:
        raise ESC50Error(f"fold{'s' * (len(failed) > 1)} {', '.join(map(str, sorted(failed)))} failed on Ray "
                         "(see above); the other folds' results are kept, and the same command resumes the sweep")
