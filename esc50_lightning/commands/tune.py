"""``esc50-lightning tune``: search a config's hyper-parameters with Optuna, on validation only.

Each trial trains the chosen folds (``--folds``, default all five) with the base config and the
space's values, through the sweep's fold code, and is scored by the mean accuracy on those folds'
validation splits: no test fold is evaluated (``sweep`` cross-validates a recipe on the test
folds; ``tune`` searches for one). The study is kept in ``--storage`` (default an SQLite file in
``--study_dir``, ``lightning_logs/studies/<name>``): the same command continues it, ``--jobs N``
runs N workers on this machine, and workers on other machines join with the same ``--storage``.
Every ``fit`` option is accepted too (``--config``, ``--trainer.max_epochs``, ``--data.root``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from jsonargparse import ArgumentParser

from esc50_lightning.errors import ESC50Error

# this command's own options and how many values each takes ("+": one or more); the rest go to fit
OPTIONS = {"space": 1, "trials": 1, "folds": "+", "name": 1, "study_dir": 1, "storage": 1, "jobs": 1, "pruner": 1,
           "timeout": 1, "status": 0, "best": 1, "restart": 0, "worker": 1}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="esc50-lightning tune", description=__doc__)
    parser.add_argument("--space", type=str | None, default=None,
                        help="YAML: setting -> {low, high[, log, step, type]} or {choices: [...]}")
    parser.add_argument("--trials", type=int, default=20,
                        help="finished (complete or pruned) trials the study should have")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="folds whose validation splits score a trial")
    parser.add_argument("--name", type=str | None, default=None, help="study name (default: the config file's stem)")
    parser.add_argument("--study_dir", type=str | None, default=None, help="default: lightning_logs/studies/<name>")
    parser.add_argument("--storage", type=str | None, default=None,
                        help="SQLAlchemy URL shared by every worker (default: sqlite:///<study_dir>/study.db)")
    parser.add_argument("--jobs", type=int, default=1, help="workers on this machine, each in a process of its own")
    parser.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median")
    parser.add_argument("--timeout", type=float | None, default=None,
                        help="seconds after which no new trial starts (a running one finishes)")
    parser.add_argument("--status", action="store_true", help="print the study's trials and best; train nothing")
    parser.add_argument("--best", type=str | None, default=None, help="also write best.yaml here")
    parser.add_argument("--restart", action="store_true",
                        help="delete a study of this name made with other settings, and start afresh")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(tune options, fit options)``: ``--name V``, ``--name=V`` and ``--folds 1 2`` are ours."""
    ours, fit, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in ("help", "h") or arg == "-h":
            ours.append(arg)
        elif name in OPTIONS:
            ours.append(arg)
            if "=" not in arg:
                takes = OPTIONS[name]
                while takes and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    ours.append(argv[i + 1])
                    i += 1
                    if takes == 1:
                        break
        else:
            fit.append(arg)
        i += 1
    return ours, fit


def config_name(fit_args: list[str]) -> str:
    from esc50_lightning.commands.sweep import config_name as stem

    name = stem(fit_args)
    return "study" if name == "sweep" else name


def settings_from(cfg: object, fit_args: list[str]) -> object:
    from esc50_lightning.training.tune import storage_url
    from esc50_lightning.training.tune_space import Space
    from esc50_lightning.training.tune_trial import StudySettings, parse_fit

    bad = [f for f in cfg.folds if f not in range(1, 6)]
    if bad:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if cfg.jobs < 1 or cfg.trials < 1:
        raise ESC50Error(f"--jobs and --trials must be at least 1, got {cfg.jobs} and {cfg.trials}")
    if any(a.startswith("--data.fold") for a in fit_args):
        raise ESC50Error("tune trains each of --folds in turn and scores its validation split; choose them "
                         "with --folds, not --data.fold")
    name = cfg.name or config_name(fit_args)
    study_dir = Path(cfg.study_dir or Path("lightning_logs") / "studies" / name)
    base = parse_fit(fit_args)
    if (base.get("data") or {}).get("val_strategy") == "none":
        raise ESC50Error("tune scores each trial on the folds' validation splits, and data.val_strategy none "
                         "has none; use val_strategy grouped")
    if cfg.space is None:
        raise ESC50Error("tune needs --space SPACE.yaml (see configs/spaces/)")
    space = Space.load(cfg.space, base)
    space.check_accepted(lambda args: parse_fit([*fit_args, *args]))
    return StudySettings(name=name, study_dir=study_dir, storage=storage_url(study_dir, cfg.storage),
                         folds=sorted(set(cfg.folds)), fit_args=fit_args, base_config=base, space=space,
                         pruner=cfg.pruner, restart=cfg.restart and cfg.worker is None, worker=cfg.worker or 0)


def status(cfg: object, fit_args: list[str]) -> None:
    import optuna

    from esc50_lightning.training.tune import open_storage, storage_url
    from esc50_lightning.training.tune_report import status_lines

    name = cfg.name or config_name(fit_args)
    study_dir = Path(cfg.study_dir or Path("lightning_logs") / "studies" / name)
    url = storage_url(study_dir, cfg.storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise ESC50Error(f"no study {name!r}: {url.removeprefix('sqlite:///')} does not exist")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise ESC50Error(f"no study {name!r} in {url}") from None
    shown = SimpleNamespace(name=name, storage=url, space=StoredSpace(study.user_attrs.get("space", {})),
                            folds=study.user_attrs.get("folds", []))
    for line in status_lines(shown, study):
        print(line)


class StoredSpace:
    """A study's space as stored (``Space.spec``): turns stored params back into values."""

    def __init__(self, spec: dict) -> None:
        self.spec_ = spec

    def values(self, params: dict) -> dict:
        out = {}
        for key, value in params.items():
            choices = self.spec_.get(key, {}).get("choices")
            out[key] = next((c for c in choices if not isinstance(c, (bool, int, float, str)) and
                             json.dumps(c) == value), value) if choices else value
        return out


def run_workers(argv: list[str], settings: object, jobs: int) -> None:
    """``jobs`` workers of this command, each in a process of its own (one GPU each, or a share
    of the CPU threads), output in ``<study_dir>/worker<i>.log``; a failed worker is one line."""
    from concurrent.futures import ThreadPoolExecutor

    from esc50_lightning.training.executors import process_slots

    ours, fit = split_args(argv)
    cleaned, skip = [], False  # this command's options but --jobs N and --restart (done here, once)
    for arg in ours:
        if skip or arg == "--jobs" or arg.startswith(("--jobs=", "--restart")):
            skip = arg == "--jobs"
            continue
        cleaned.append(arg)
    settings.study_dir.mkdir(parents=True, exist_ok=True)

    def one(index: int, slot: dict) -> tuple[int, int, Path]:
        log = settings.study_dir / f"worker{index}.log"
        command = [sys.executable, "-m", "esc50_lightning", "tune", *cleaned, "--jobs=1", f"--worker={index}", *fit]
        with open(log, "a") as out:
            out.write(f"=== {datetime.now().isoformat(timespec='seconds')} worker {index}\n")
            out.flush()
            code = subprocess.run(command, env={**os.environ, **slot}, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
        return index, code, log

    slots = process_slots(jobs)
    for index, slot in enumerate(slots):
        print(f"tune {settings.name}: worker {index} started ({', '.join(f'{k}={v}' for k, v in slot.items())}; "
              f"output in {settings.study_dir / f'worker{index}.log'})", flush=True)
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda args: one(*args), enumerate(slots)))
    failed = [(i, code, log) for i, code, log in results if code != 0]
    for index, code, log in failed:
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        print(f"tune {settings.name}: worker {index} failed (exit status {code}): {lines[-1]} (see {log})",
              file=sys.stderr, flush=True)
    if failed:
        raise ESC50Error(f"{len(failed)} of {jobs} workers failed (see above); finished trials are kept, "
                         "and the same command continues the study")


def main(argv: list[str]) -> None:
    ours, fit_args = split_args(argv)
    cfg = build_parser().parse_args(ours)
    if cfg.status:
        status(cfg, fit_args)
        return
    settings = settings_from(cfg, fit_args)
    from esc50_lightning.data.download import ensure_dataset
    from esc50_lightning.training import tune, tune_report

    if cfg.worker is not None:  # one of --jobs N's workers: trials only
        tune.run_worker(settings, cfg.trials, cfg.timeout, rerun=False)
        return
    ensure_dataset((settings.base_config.get("data") or {}).get("root"))  # once, before any worker reads it
    study = tune.open_study(settings)
    settings.restart = False  # done once, here
    print(f"tune {settings.name}: {len(settings.space.params)} settings searched, {cfg.trials} trials, scored on "
          f"the validation splits of folds {', '.join(map(str, settings.folds))}; study in {settings.storage}, "
          f"trials in {settings.study_dir / 'trials'}", flush=True)
    try:
        if cfg.jobs > 1:
            queued = tune.rerun_killed_trials(study)  # here, once: the workers skip it
            if queued:
                print(f"tune {settings.name}: trial(s) {', '.join(map(str, queued))} stopped part-way: queued again "
                      "with the same values", flush=True)
            run_workers(argv, settings, cfg.jobs)
        else:
            tune.run_worker(settings, cfg.trials, cfg.timeout, study)
    finally:
        tune_report.write_missing_rows(settings, study)
        written = [tune_report.write_study_json(settings, study)]
        written += tune_report.draw_pictures(study, settings.study_dir)
        written += tune_report.write_best(settings, study, [Path(cfg.best)] if cfg.best else [])
        for line in tune_report.status_lines(settings, study, cfg.trials):
            print(line)
        print(f"tune {settings.name}: wrote {', '.join(map(str, written))}; TensorBoard: tensorboard --logdir "
              f"{settings.study_dir}")
