"""Where the folds of a sweep run: here one after another, in N local processes, or on Ray.

Executors only decide *where*. Every fold runs ``run_fold``, which resumes from its last
checkpoint and writes ``<sweep_dir>/fold<K>/result.json``; the sweep then aggregates the fold
folders, whoever wrote them.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.fold import run_fold

CHECKPOINTS = "checkpoints"


def run_here(fit_args: list[str], folds: list[int], sweep_dir: Path) -> None:
    """One fold after another in this process (DDP strategies included)."""
    for fold in folds:
        result = run_fold(fit_args, fold, sweep_dir / f"fold{fold}")
        if rank_zero_only.rank == 0:
            print(f"fold {fold}: accuracy {result['accuracy']:.4f}")


def process_slots(jobs: int) -> list[dict[str, str]]:
    """Environment of each of ``jobs`` parallel fold processes: one GPU each (round robin over
    the visible ones) when there are GPUs, else an equal share of the CPU threads."""
    gpus = torch.cuda.device_count()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        return [{"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(jobs)]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(jobs)]


def run_processes(fit_args: list[str], folds: list[int], sweep_dir: Path, jobs: int) -> None:
    """``jobs`` folds at a time, each in a process of its own (``python -m
    esc50_lightning.training.fold``); each fold's console output goes to ``fold<K>.log``."""
    slots: queue.Queue[dict[str, str]] = queue.Queue()
    for slot in process_slots(jobs):
        slots.put(slot)
    sweep_dir.mkdir(parents=True, exist_ok=True)

    def one(fold: int) -> None:
        slot = slots.get()
        log = sweep_dir / f"fold{fold}.log"
        try:
            command = [sys.executable, "-m", "esc50_lightning.training.fold", str(fold),
                       str(sweep_dir / f"fold{fold}"), *fit_args]
            print(f"fold {fold}: started ({', '.join(f'{k}={v}' for k, v in slot.items())}; output in {log})")
            with open(log, "w") as out:
                code = subprocess.run(command, env={**os.environ, **slot}, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL).returncode
        finally:
            slots.put(slot)
        if code != 0:
            lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise ESC50Error(f"fold {fold} failed (exit status {code}): {lines[-1]} (see {log})")
        print(f"fold {fold}: done")

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(one, fold) for fold in folds]:
            future.result()


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


def fold_task(fit_args: list[str], fold: int, fold_dir: str) -> dict[str, bytes]:
    """A Ray task: run one fold into ``fold_dir`` on the worker; return the fold folder's files
    (all but checkpoints), so they reach the driver's sweep folder over any filesystem."""
    root = Path(fold_dir)
    run_fold(fit_args, fold, root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and CHECKPOINTS not in p.relative_to(root).parts}


def run_ray(fit_args: list[str], folds: list[int], sweep_dir: Path, cpus: float | None, gpus: float | None) -> None:
    """Every fold a Ray task with ``cpus``/``gpus`` (default: 1 GPU each when the cluster has
    GPUs, else its CPUs shared between the folds). Joins the cluster at ``RAY_ADDRESS``, else
    starts a local one."""
    try:
        import ray
    except ImportError:
        raise ESC50Error("--executor ray needs Ray: pip install 'esc50-lightning[ray]'") from None
    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k == "ESC50_ROOT"}
        ray.init(runtime_env={"env_vars": env} if env else None, log_to_driver=False)
    resources = ray.cluster_resources()
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
    if cpus is None:
        cpus = 1.0 if gpus else max(1.0, resources.get("CPU", 1) // len(folds))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(fold_task)
    args = inline_configs(fit_args)
    refs = {fold: task.remote(args, fold, str((sweep_dir / f"fold{fold}").resolve())) for fold in folds}
    print(f"ray: {len(folds)} folds as tasks of {cpus:g} CPU and {gpus:g} GPU each on {resources}")
    for fold, ref in refs.items():
        try:
            files = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            raise ESC50Error(f"fold {fold} failed on Ray: {str(err.cause).splitlines()[-1]}") from None
        for name, blob in files.items():
            target = sweep_dir / f"fold{fold}" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and target.read_bytes() == blob):  # a shared filesystem has it already
                target.write_bytes(blob)
        print(f"fold {fold}: done")
