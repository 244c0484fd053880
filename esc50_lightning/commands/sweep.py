"""``esc50-lightning sweep``: fit + test once per fold, resumable, aggregated into one JSON.

Each fold trains a fresh model on the other four folds and is tested with its final weights;
nothing is ever selected on the test fold. Each fold has a folder of its own
(``training.sweep.FoldDir``): a finished fold is skipped, an interrupted one resumes from its last
checkpoint with the settings it was trained with. Where folds run is the executor's choice
(``training.executors``): here, ``--jobs N`` local processes, or ``--executor ray``.
"""

from __future__ import annotations

import argparse
import builtins
import sys
from contextlib import nullcontext
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.data.download import ensure_dataset
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training import executors
from esc50_lightning.training.fold import requested_config
from esc50_lightning.training.sweep import FoldDir, aggregate, folds_to_run, setting_differences, sweep_lock


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="esc50-lightning sweep",
        description="Cross-validate a config over the official folds. Every `fit` option is "
        "accepted too (e.g. --config, --trainer.max_epochs, --data.root, --trainer.strategy ddp).",
    )
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--results", help="also write the aggregated JSON (and .md) here")
    parser.add_argument("--name", help="sweep name (default: the config file's stem)")
    parser.add_argument("--sweep_dir", help="default: lightning_logs/sweeps/<name>")
    parser.add_argument("--jobs", type=int, default=1,
                        help="folds at once, each in its own process (own GPU, or a share of the CPU threads)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="ray: every fold a Ray task (cluster at RAY_ADDRESS, else a local one)")
    parser.add_argument("--ray_cpus_per_fold", type=float, help="default: the cluster's CPUs shared by the folds")
    parser.add_argument("--ray_gpus_per_fold", type=float, help="default: 1 when the cluster has GPUs, else 0")
    parser.add_argument("--status", action="store_true",
                        help="print where each fold stands (tested, epochs trained so far, not started); train nothing")
    parser.add_argument("--restart", action="store_true",
                        help="train afresh every fold whose recorded settings differ from this run's "
                             "(without it such a fold is refused, or kept when already tested)")
    args, rest = parser.parse_known_args(argv)
    bad = [f for f in args.folds if f not in range(1, 6)]
    if bad:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if args.jobs < 1:
        raise ESC50Error(f"--jobs must be at least 1, got {args.jobs}")
    if "--data.fold=all" in rest or any(a == "--data.fold" and b == "all" for a, b in zip(rest, rest[1:])):
        raise ESC50Error("sweep tests each of --folds in turn, and --data.fold all holds no fold out; "
                         "train the model on every clip with fit --data.fold all")
    args.folds = sorted(set(args.folds))  # each fold runs and counts once
    return args, rest


def config_name(rest: list[str]) -> str:
    for i, arg in enumerate(rest):
        if arg == "--config" and i + 1 < len(rest):
            return Path(rest[i + 1]).stem
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).stem
    return "sweep"


def changed_done_folds(name: str, sweep_dir: Path, folds: list[int], requested: dict, restart: bool) -> list[int]:
    """A line per finished fold that is not trained again, and one more where it was trained with
    settings other than this run's: a changed setting is never silently ignored. Returns those
    folds when ``restart`` asks to train them afresh."""
    changed_folds = []
    print = builtins.print if rank_zero_only.rank == 0 else lambda *args, **kwargs: None  # noqa: A001
    for fold in folds:
        fold_dir = FoldDir(sweep_dir, fold)
        changed = setting_differences(fold_dir.result().get("config", {}), requested)
        if changed and restart:
            print(f"sweep {name}: fold {fold} was trained with other settings ({'; '.join(changed)}); "
                  "--restart: training it afresh")
            changed_folds.append(fold)
            continue
        print(f"sweep {name}: fold {fold} skipped, {fold_dir.status()} ({fold_dir.result_file})")
        if changed:
            print(f"sweep {name}: fold {fold} was trained with other settings than this run's "
                  f"({'; '.join(changed)}); its result is kept, --restart trains it afresh", file=sys.stderr)
    return changed_folds


def main(argv: list[str]) -> None:
    args, rest = parse(argv)
    name = args.name or config_name(rest)
    sweep_dir = Path(args.sweep_dir or Path("lightning_logs") / "sweeps" / name)
    if args.status:
        for fold in args.folds:
            print(f"sweep {name}: fold {fold}: {FoldDir(sweep_dir, fold).status()}")
        return
    with sweep_lock(sweep_dir) if rank_zero_only.rank == 0 else nullcontext():  # one sweep per folder at a time
        run(args, rest, name, sweep_dir)


def run(args: argparse.Namespace, rest: list[str], name: str, sweep_dir: Path) -> None:
    """Train what is left (an option the folds would reject fails here, once), then aggregate."""
    requested = requested_config(rest)
    todo, done = folds_to_run(sweep_dir, args.folds)
    for fold in todo:
        if FoldDir(sweep_dir, fold).damaged_result():
            print(f"sweep {name}: fold {fold}: {FoldDir(sweep_dir, fold).result_file} is unreadable "
                  "(interrupted while written?); testing the fold again from its checkpoint")
    if done:  # every DDP rank decides alike; rank 0 speaks
        todo = sorted(todo + changed_done_folds(name, sweep_dir, done, requested, args.restart))
    if todo and rank_zero_only.rank == 0:  # once, before the folds' processes would all download at once
        ensure_dataset(requested.get("data", {}).get("root"))
    if todo and args.executor == "ray":
        executors.run_ray(rest, todo, sweep_dir, args.ray_cpus_per_fold, args.ray_gpus_per_fold, args.restart)
    elif todo and args.jobs > 1:
        executors.run_processes(rest, todo, sweep_dir, min(args.jobs, len(todo)), args.restart)
    elif todo:
        executors.run_here(rest, todo, sweep_dir, args.restart)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this program; one writes
        _, table, written = aggregate(name, sweep_dir, args.folds, args.results)
        print(table)
        print(f"sweep {name}: results in {', '.join(map(str, written[:-1]))}; TensorBoard summary run in "
              f"{written[-1]}")
