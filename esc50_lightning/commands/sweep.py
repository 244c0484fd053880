"""``esc50-lightning sweep``: fit + test once per fold, resumable, aggregated into one JSON.

Each fold trains a fresh model on the other four folds and is tested with its final weights;
nothing is ever selected on the test fold. Folds live in ``<sweep_dir>/fold<K>/`` (TensorBoard
events, ``checkpoints/last.ckpt``, ``result.json``): a finished fold is skipped, an interrupted
one resumes from its last checkpoint. Where folds run is the executor's choice
(``training.executors``): here, ``--jobs N`` local processes, or ``--executor ray``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.errors import ESC50Error
from esc50_lightning.results import summarize_run, write_results
from esc50_lightning.training import executors
from esc50_lightning.training.fold import (
    counted_accuracy,
    fold_status,
    requested_config,
    result_path,
    setting_differences,
)


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
    args, rest = parser.parse_known_args(argv)
    bad = [f for f in args.folds if f not in range(1, 6)]
    if bad:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if args.jobs < 1:
        raise ESC50Error(f"--jobs must be at least 1, got {args.jobs}")
    return args, rest


def config_name(rest: list[str]) -> str:
    for i, arg in enumerate(rest):
        if arg == "--config" and i + 1 < len(rest):
            return Path(rest[i + 1]).stem
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).stem
    return "sweep"


def unique(items: list[dict]) -> list[dict]:
    return [item for i, item in enumerate(items) if item not in items[:i]]


def aggregate(name: str, sweep_dir: Path, folds: list[int], results_file: str | None) -> None:
    """Read the fold folders' ``result.json`` and write the sweep's JSON and markdown table."""
    results = [json.loads(result_path(sweep_dir / f"fold{fold}").read_text()) for fold in folds]
    confusion = np.sum([r["confusion_matrix"] for r in results], axis=0).astype(int)
    rows = [{"fold": r["fold"], "accuracy": counted_accuracy(r["confusion_matrix"]),
             **{k: r[k] for k in ("precision", "recall", "f1", "train_seconds")}} for r in results]
    run = summarize_run(name, rows)
    extra = {"class_names": results[0]["class_names"], "confusion_matrix": confusion.tolist(),
             "total_train_seconds": round(sum(f["train_seconds"] for f in rows), 1),
             "machines": unique([r["machine"] for r in results if "machine" in r])}  # where the seconds were spent
    targets = [sweep_dir / "results.json"] + ([Path(results_file)] if results_file else [])
    for target in targets:
        table = write_results(target, "sweep", results[0]["config"], results[0]["dataset"], [run], extra)
    print(table)
    print(f"sweep {name}: results in {', '.join(map(str, targets))}")


def report_skipped(name: str, sweep_dir: Path, folds: list[int], requested: dict) -> None:
    """A line per finished fold that is not trained again, and one more where it was trained with
    settings other than this run's: a changed setting is never silently ignored."""
    for fold in folds:
        path = result_path(sweep_dir / f"fold{fold}")
        print(f"sweep {name}: fold {fold} skipped, {fold_status(path.parent)} ({path})")
        changed = setting_differences(json.loads(path.read_text()).get("config", {}), requested)
        if changed:
            print(f"sweep {name}: fold {fold} was trained with other settings than this run's "
                  f"({'; '.join(changed)}); its result is kept, a new --sweep_dir trains afresh", file=sys.stderr)


def main(argv: list[str]) -> None:
    args, rest = parse(argv)
    name = args.name or config_name(rest)
    sweep_dir = Path(args.sweep_dir or Path("lightning_logs") / "sweeps" / name)
    if args.status:
        for fold in args.folds:
            print(f"sweep {name}: fold {fold}: {fold_status(sweep_dir / f'fold{fold}')}")
        return
    todo = [fold for fold in args.folds if not result_path(sweep_dir / f"fold{fold}").exists()]
    done = sorted(set(args.folds) - set(todo))
    if done and rank_zero_only.rank == 0:
        report_skipped(name, sweep_dir, done, requested_config(rest))
    if todo and args.executor == "ray":
        executors.run_ray(rest, todo, sweep_dir, args.ray_cpus_per_fold, args.ray_gpus_per_fold)
    elif todo and args.jobs > 1:
        executors.run_processes(rest, todo, sweep_dir, min(args.jobs, len(todo)))
    elif todo:
        executors.run_here(rest, todo, sweep_dir)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this program; one writes
        aggregate(name, sweep_dir, args.folds, args.results)
