"""The sweep's one home: the fold-folder layout, what to run, skip or resume, and aggregation
(whether two configs are one recipe: ``training.recipe``).

A sweep is five independent folds, each in ``<sweep_dir>/fold<K>/``: TensorBoard events,
``config.yaml``, ``checkpoints/last.ckpt`` while it trains and ``result.json`` once tested. This
is the only module that spells that layout (``FoldDir``); whoever ran a fold (this process, a
local process, a Ray task, a SLURM array task), the sweep aggregates the folders.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from esc50_lightning.errors import ESC50Error
from esc50_lightning.locks import file_lock
from esc50_lightning.results import counted_accuracy, summarize_run, write_results
from esc50_lightning.training.recipe import (  # noqa: F401 - re-exported: imported from here before
    NOT_COMPARED,
    STANDARD_CALLBACKS,
    comparable,
    flat_settings,
    resolved_changes,
    setting_differences,
)
from esc50_lightning.training.settings import checkpoint_ran_with, resolution
from esc50_lightning.training.summary import write_sweep_summary


@dataclass(frozen=True)
class FoldDir:
    """The folder of fold ``fold`` of the sweep in ``sweep_dir``, and the names of what it holds."""

    sweep_dir: Path
    fold: int

    @classmethod
    def of(cls, path: str | Path) -> FoldDir:
        """The ``FoldDir`` of a fold folder named on a command line (``<sweep_dir>/fold<K>``)."""
        path = Path(path)
        match = re.fullmatch(r"fold([1-5])", path.name)
        if match is None:
            raise ESC50Error(f"{path}: not a sweep's fold folder (<sweep_dir>/fold<K>, K in 1-5)")
        return cls(path.parent, int(match.group(1)))

    @property
    def path(self) -> Path:
        return Path(self.sweep_dir) / f"fold{self.fold}"

    @property
    def checkpoint(self) -> Path:
        """Where training resumes from, and the weights the fold was tested with."""
        return self.path / "checkpoints" / "last.ckpt"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def config_file(self) -> Path:
        """The resolved config of the fold's latest run (LightningCLI's ``config.yaml``)."""
        return self.path / "config.yaml"

    @property
    def log_file(self) -> Path:
        """The console output of a fold run in a process of its own (``sweep --jobs N``)."""
        return Path(self.sweep_dir) / f"fold{self.fold}.log"

    def logger_args(self) -> list[str]:
        """LightningCLI options that make the fold's TensorBoard run this folder."""
        return ["--trainer.logger.class_path=lightning.pytorch.loggers.TensorBoardLogger",
                f"--trainer.logger.init_args.save_dir={self.path.parent}",
                "--trainer.logger.init_args.name=",
                f"--trainer.logger.init_args.version={self.path.name}",
                "--trainer.logger.init_args.default_hp_metric=false"]

    def is_checkpoint_file(self, path: Path) -> bool:
        """Whether ``path`` (inside this folder) is a checkpoint: big, and never sent back by Ray."""
        return self.checkpoint.parent.name in Path(path).relative_to(self.path).parts

    def result(self) -> dict | None:
        """The fold's ``result.json``, or ``None`` when there is none or it is unreadable (a crash
        or a full disk while writing): then the fold counts as not tested and is tested again."""
        try:
            return json.loads(self.result_file.read_text())
        except (OSError, ValueError):
            return None

    def damaged_result(self) -> bool:
        return self.result_file.exists() and self.result() is None

    def trained_config(self) -> dict | None:
        """The config the fold was trained with: its result's, else its last run's ``config.yaml``."""
        result = self.result()
        if result is not None:
            return result.get("config")
        try:
            return yaml.safe_load(self.config_file.read_text()) or None
        except (OSError, yaml.YAMLError):
            return None

    def trained_resolved(self) -> dict | None:
        """What the fold's ``auto`` settings ran as (``settings.RESOLVED``): its result's record,
        else its checkpoint's (``settings.RanWith``); ``None`` where neither holds one (written
        before they did)."""
        result = self.result()
        if result is not None:
            return result.get("resolved")
        return checkpoint_ran_with(self.checkpoint) if self.checkpoint.is_file() else None

    def trained_resolution(self) -> dict:
        """``settings.resolution`` of the fold's record: what its settings ran as, as far as it says."""
        return resolution(self.trained_config() or {}, {**(self.result() or {}), "resolved": self.trained_resolved()})

    def checkpoint_progress(self) -> tuple[int, float]:
        """``(epochs, seconds)`` that ``last.ckpt`` holds: epochs trained and the training time its
        ``Timer`` had counted when it was saved (what a fold tested again from it reports)."""
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False, mmap=True)
        timer = state.get("callbacks", {}).get("Timer", {})
        return state["epoch"] + 1, timer.get("time_elapsed", {}).get("train", 0.0)

    def status(self) -> str:
        """One line on where the fold stands: tested (its accuracy), part-trained (epochs so far,
        from ``last.ckpt``, where a new run resumes), or not started."""
        result = self.result()
        if result is not None:
            return (f"done: test accuracy {result['accuracy']:.4f} after {result['epochs']} epochs, "
                    f"{result['train_seconds']:,.1f} s of training")
        damaged = f"{self.result_file} is unreadable and will be written again; " if self.damaged_result() else ""
        if not self.checkpoint.exists():
            return f"{damaged}not started"
        try:
            epochs, seconds = self.checkpoint_progress()
        except Exception as err:  # noqa: BLE001 - a status line, not a traceback
            return f"{self.checkpoint}: not a readable checkpoint ({type(err).__name__}); the next run cannot resume"
        max_epochs = flat_settings(self.trained_config() or {}).get("trainer.max_epochs")
        target = f" of {max_epochs}" if max_epochs else ""
        return (f"{damaged}{epochs}{target} epochs trained ({seconds:,.1f} s), not tested yet (running, or "
                f"stopped: a new run resumes from {self.checkpoint})")


def check_same_recipe(sweep_dir: Path, folds: list[int], results: list[dict]) -> None:
    """Folds aggregate under one config only where they were trained with the same settings
    (``as_written``: ``auto`` may have resolved otherwise on another machine; each fold's own is
    recorded in the result's ``resolved``). The first that was not is refused in one line."""
    first, first_ran = results[0], resolution(results[0].get("config") or {}, results[0])
    for fold, result in zip(folds[1:], results[1:]):
        changed = setting_differences(first.get("config") or {}, result.get("config") or {}, first_ran,
                                      resolution(result.get("config") or {}, result), as_written=True,
                                      label="ran as {}")
        if changed:
            raise ESC50Error(f"fold {fold} in {FoldDir(sweep_dir, fold).path} was trained with other settings than "
                             f"fold {folds[0]} ({'; '.join(changed)}); one result cannot carry both: train it again "
                             "with the others' settings (sweep ... --restart), or leave it out with --folds")


def folds_to_run(sweep_dir: Path, folds: list[int]) -> tuple[list[int], list[int]]:
    """``(todo, done)``: folds without a readable result run (or resume); tested ones are skipped."""
    todo = [fold for fold in folds if FoldDir(sweep_dir, fold).result() is None]
    return todo, [fold for fold in folds if fold not in todo]


def collect(name: str, sweep_dir: Path, folds: list[int]) -> dict:
    """The sweep's result from its folds' ``result.json``, shaped as ``results.json`` (DESIGN.md)."""
    results = [FoldDir(sweep_dir, fold).result() for fold in folds]
    check_same_recipe(sweep_dir, folds, results)
    confusion = np.sum([r["confusion_matrix"] for r in results], axis=0).astype(int)
    rows = [{"fold": r["fold"], "accuracy": counted_accuracy(r["confusion_matrix"]),
             **{k: r[k] for k in ("precision", "recall", "f1", "train_seconds")}} for r in results]
    run = summarize_run(name, rows)
    machines = [r["machine"] for r in results if "machine" in r]
    extra = {"class_names": results[0]["class_names"], "confusion_matrix": confusion.tolist(),
             "total_train_seconds": round(sum(f["train_seconds"] for f in rows), 1),
             "machines": [m for i, m in enumerate(machines) if m not in machines[:i]],  # where the seconds went
             # what each fold's auto settings ran as (records written before that say what they can)
             "resolved": {str(r["fold"]): r.get("resolved") or resolution(r.get("config") or {}, r) for r in results}}
    return {"kind": "sweep", "config": results[0]["config"], "dataset": results[0]["dataset"], "runs": [run],
            **extra}


def aggregate(name: str, sweep_dir: Path, folds: list[int], results_file: str | Path | None = None
              ) -> tuple[dict, str, list[Path]]:
    """``collect`` the folds and write the sweep's ``results.json`` (and ``results_file``) with a
    markdown table beside each, and its TensorBoard summary run; return the result, the table
    and the files written."""
    result = collect(name, sweep_dir, folds)
    targets = [Path(sweep_dir) / "results.json"] + ([Path(results_file)] if results_file else [])
    rest = {k: v for k, v in result.items() if k not in ("kind", "config", "dataset", "runs")}
    for target in targets:
        table = write_results(target, "sweep", result["config"], result["dataset"], result["runs"], rest)
    return result, table, [*targets, write_sweep_summary(Path(sweep_dir), result)]


def checkpoint_pattern(sweep_dir: str | Path) -> str:
    """The checkpoints of a sweep's folds with ``{fold}`` for the fold, as ``--model.teachers``
    takes them (each fold's student learns from the teacher that held out the same fold)."""
    return str(FoldDir(Path(sweep_dir), "{fold}").checkpoint)  # type: ignore[arg-type]  # a pattern, not a fold


def lock_file(sweep_dir: Path) -> Path:
    """The sweep folder's lock: held by the one sweep (driver) that writes into the folder."""
    return Path(sweep_dir) / "sweep.lock"


def token_file(sweep_dir: Path) -> Path:
    """The driver's random token for this run: a Ray worker that reads the same token sees the
    driver's sweep folder (a shared filesystem)."""
    return Path(sweep_dir) / "driver.token"


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``lock_file(sweep_dir)`` while the body runs. Two sweeps into one folder would train
    the same folds into the same files at once: the second is refused in one line naming the
    folder and the holder (pid, host, start time, written into the lock file); a lock left by a
    killed sweep never blocks (``locks.file_lock``)."""
    path = lock_file(sweep_dir)

    def refuse() -> None:
        holder = path.read_text(errors="replace").strip() or "holder not recorded yet"
        raise ESC50Error(f"{sweep_dir} is in use by another sweep ({holder}); wait for it to end, "
                         "or use another --sweep_dir")

    with file_lock(path, refuse) as fd:
        if fd is not None:  # None: filelock's own lock file, which records pid and host itself
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield
