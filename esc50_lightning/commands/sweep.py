"""``esc50-lightning sweep``: fit + test once per fold, resumable, aggregated into one JSON.

Each fold trains a fresh model on the other four folds and is tested with its final weights;
nothing is ever selected on the test fold. Each fold has a folder of its own
(``training.sweep.FoldDir``): a finished fold is skipped, an interrupted one resumes from its last
checkpoint with the settings it was trained with. Where folds run is the executor's choice
(``training.executors``): here, ``--jobs N`` local processes, or ``--executor ray``.

Its own options parse with jsonargparse, as every command's; every other option is ``fit``'s and
goes to each fold's LightningCLI as given (``--config`` is the recipe, ``configs/*.yaml``). A
jsonargparse parser cannot leave unknown options for another one (it has no
``parse_known_args``), so the sweep's options are taken out of the command line by name first.
"""

from __future__ import annotations

import builtins
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.data.download import ensure_dataset
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training import executors
from esc50_lightning.training.fold import requested_config
from esc50_lightning.training.settings import RESOLVED, resolution
from esc50_lightning.training.sweep import FoldDir, aggregate, folds_to_run, setting_differences, sweep_lock

# the sweep's own options and how many values each takes ("+": one or more); the rest are fit's
OWN_OPTIONS = {"folds": "+", "results": 1, "name": 1, "sweep_dir": 1, "jobs": 1, "folds_per_gpu": 1, "executor": 1,
               "ray_cpus_per_fold": 1, "ray_gpus_per_fold": 1, "status": 0, "restart": 0}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="esc50-lightning sweep",
        description="Cross-validate a config over the official folds: fit + test once per fold, resumable. Every "
        "option of esc50-lightning fit is accepted too and passed to each fold's fit (esc50-lightning fit --help "
        "lists them: --trainer.max_epochs, --data.root, --trainer.strategy ddp, ...).",
    )
    parser.add_argument("--config", help="fit's config file, the recipe every fold trains (configs/*.yaml); "
                                         "the sweep's own options are given on the command line")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--results", type=str | None, default=None,
                        help="also write the aggregated JSON (and .md) here")
    parser.add_argument("--name", type=str | None, default=None, help="sweep name (default: the config file's stem)")
    parser.add_argument("--sweep_dir", type=str | None, default=None, help="default: lightning_logs/sweeps/<name>")
    parser.add_argument("--jobs", type=int, default=1,
                        help="folds at once, each in its own process (own GPU, or a share of the CPU threads)")
    parser.add_argument("--folds_per_gpu", type=int, default=1,
                        help="with --jobs on GPUs: folds that share one GPU (default 1: --jobs at most the GPU count)")
    parser.add_argument("--executor", type=Literal["local", "ray"], default="local",
                        help="ray: every fold a Ray task (cluster at RAY_ADDRESS, else a local one)")
    parser.add_argument("--ray_cpus_per_fold", type=float | None, default=None,
                        help="default: the cluster's CPUs shared by the folds that run at once (with GPUs: as many "
                             "folds as they hold)")
    parser.add_argument("--ray_gpus_per_fold", type=float | None, default=None,
                        help="default: 1 when the cluster has GPUs, else 0")
    parser.add_argument("--status", action="store_true",
                        help="print where each fold stands (tested, epochs trained so far, not started) and, with "
                             "fit options, which folds were trained with other settings; train nothing")
    parser.add_argument("--restart", action="store_true",
                        help="train afresh every fold whose recorded settings differ from this run's "
                             "(without it such a fold is refused)")
    return parser


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` as ``(the sweep's own options, fit's)``: an option of ``OWN_OPTIONS`` (``--jobs 2``,
    ``--jobs=2``, ``--folds 1 2``) with its values, and ``--help``, are the sweep's; every other
    token is fit's, in its order."""
    own, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        i += 1
        if arg in ("-h", "--help") or key in OWN_OPTIONS:
            own.append(arg)
            takes = OWN_OPTIONS.get(key, 0) if "=" not in arg else 0
            while takes and i < len(argv) and not argv[i].startswith("--"):
                own.append(argv[i])
                i += 1
                takes = takes if takes == "+" else takes - 1
        else:
            rest.append(arg)
    return own, rest


def parse(argv: list[str]) -> tuple[Namespace, list[str]]:
    own, rest = split_args(argv)
    args = build_parser().parse_args(own)
    bad = [f for f in args.folds if f not in range(1, 6)]
    if bad:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if args.jobs < 1:
        raise ESC50Error(f"--jobs must be at least 1, got {args.jobs}")
    if args.folds_per_gpu < 1:
        raise ESC50Error(f"--folds_per_gpu must be at least 1, got {args.folds_per_gpu}")
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


def changes_from(sweep_dir: Path, fold: int, requested: dict) -> list[str]:
    """The settings fold ``fold`` was trained with other than ``requested``'s (``auto`` ones as
    they resolved where both records say: an explicit value is its own resolution)."""
    fold_dir = FoldDir(sweep_dir, fold)
    trained = fold_dir.trained_config()
    return setting_differences(trained, requested, fold_dir.trained_resolution(), resolution(requested)) \
        if trained else []


def changed_done_folds(name: str, sweep_dir: Path, folds: list[int], requested: dict, restart: bool) -> list[int]:
    """A line per finished fold that is not trained again. A finished fold trained with settings
    other than this run's is never aggregated as this run's: one line names each such fold and
    setting and refuses, unless ``restart`` asks to train them afresh (returned)."""
    changes = {fold: changes_from(sweep_dir, fold, requested) for fold in folds}
    changed = [fold for fold in folds if changes[fold]]
    if changed and not restart:
        first, *others = changed
        more = "".join(f", and fold {fold} too" + ("" if changes[fold] == changes[first] else
                                                  f" ({'; '.join(changes[fold])})") for fold in others)
        raise ESC50Error(f"sweep {name}: fold {first} was trained with other settings than this run's "
                         f"({'; '.join(changes[first])}){more}; a result is never labelled with settings a fold "
                         f"did not train with: add --restart to train {'them' if others else 'it'} afresh, or use "
                         "another --sweep_dir")
    print = builtins.print if rank_zero_only.rank == 0 else lambda *args, **kwargs: None  # noqa: A001
    for fold in folds:
        if changes[fold]:
            print(f"sweep {name}: fold {fold} was trained with other settings ({'; '.join(changes[fold])}); "
                  "--restart: training it afresh")
        else:
            print(f"sweep {name}: fold {fold} skipped, {FoldDir(sweep_dir, fold).status()} "
                  f"({FoldDir(sweep_dir, fold).result_file})")
    return changed


def status_lines(name: str, sweep_dir: Path, folds: list[int], rest: list[str]) -> list[str]:
    """``--status``: where each fold stands; where a finished fold was trained with other settings
    than the first finished one's (a sweep would not aggregate them), and, given fit options,
    where a fold was trained with other settings than theirs (a sweep would refuse it)."""
    requested = requested_config(rest) if rest else None
    done = [fold for fold in folds if FoldDir(sweep_dir, fold).result() is not None]
    first = FoldDir(sweep_dir, done[0]) if done else None
    lines = []
    for fold in folds:
        fold_dir = FoldDir(sweep_dir, fold)
        line = f"sweep {name}: fold {fold}: {fold_dir.status()}"
        if first is not None and fold in done and fold != first.fold:
            recipe = setting_differences(first.trained_config() or {}, fold_dir.trained_config() or {},
                                         first.trained_resolution(), fold_dir.trained_resolution(),
                                         as_written=True, label="ran as {}")
            if recipe:
                line += f"; trained with other settings than fold {first.fold} ({'; '.join(recipe)})"
        changed = changes_from(sweep_dir, fold, requested) if requested is not None else []
        if changed:
            line += (f"; trained with other settings than this run's ({'; '.join(changed)}): a sweep refuses it, "
                     "--restart trains it afresh")
        lines.append(line)
    return lines


def main(argv: list[str]) -> None:
    args, rest = parse(argv)
    name = args.name or config_name(rest)
    sweep_dir = Path(args.sweep_dir or Path("lightning_logs") / "sweeps" / name)
    if args.status:
        print("\n".join(status_lines(name, sweep_dir, args.folds, rest)))
        return
    with sweep_lock(sweep_dir) if rank_zero_only.rank == 0 else nullcontext():  # one sweep per folder at a time
        run(args, rest, name, sweep_dir)


def run(args: Namespace, rest: list[str], name: str, sweep_dir: Path) -> None:
    """Train what is left (an option the folds would reject fails here, once), then aggregate."""
    requested = requested_config(rest)
    if args.executor == "local" and args.jobs > 1:  # impossible --jobs refused before anything trains
        executors.check_parallel_folds(args.jobs, args.folds_per_gpu, requested.get("trainer", {}),
                                       executors.visible_gpus())
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
        executors.run_processes(rest, todo, sweep_dir, min(args.jobs, len(todo)), args.restart, args.folds_per_gpu,
                                str(requested.get("trainer", {}).get("accelerator", "auto")))
    elif todo:
        executors.run_here(rest, todo, sweep_dir, args.restart)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this program; one writes
        result, table, written = aggregate(name, sweep_dir, args.folds, args.results)
        print(table)
        if mixed := resolved_apart(result.get("resolved", {})):
            print(f"sweep {name}: auto resolved otherwise on some folds' machines ({mixed}); each fold's is in "
                  f"{written[0]} (resolved)")
        print(f"sweep {name}: results in {', '.join(map(str, written[:-1]))}; TensorBoard summary run in "
              f"{written[-1]}")


def resolved_apart(resolved: dict[str, dict]) -> str:
    """``trainer.precision 32-true (fold 1), bf16-mixed (fold 2)``: the settings of
    ``settings.RESOLVED`` that the folds ran with differently, or ``""``."""
    parts = []
    for key in RESOLVED:
        values = {fold: ran.get(key) for fold, ran in resolved.items() if ran.get(key) is not None}
        if len(set(map(str, values.values()))) > 1:
            parts.append(f"{key} " + ", ".join(f"{value} (fold {fold})" for fold, value in values.items()))
    return "; ".join(parts)
