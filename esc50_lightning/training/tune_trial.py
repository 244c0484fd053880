"""One trial of a ``tune`` study: the chosen folds trained in turn and scored on validation.

A trial is the base config with the space's values written in (``training.tune_space``). It
trains each chosen fold through the sweep's fold code (``training.fold.run_fold`` with
``test=False``) into ``<study_dir>/trials/trial<N>/fold<K>/``; a fold's score is the accuracy, on
its validation split (the grouped split carved from its training folds), of the weights a sweep
would test. No test fold is evaluated, and each trial's record says so. A scored fold keeps
``validation.json`` and its TensorBoard curves; its checkpoint goes (a trial never trains it again).

Each epoch's validation accuracy is reported to Optuna, and after each fold the running mean, at
steps laid out fold after fold (``report_step``), so that a pruner compares every trial with the
others at the same point.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from esc50_lightning.atomic import write_json_atomic
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.recipe import flat_settings
from esc50_lightning.training.sweep import FoldDir
from esc50_lightning.training.tune_space import Space

MONITOR = "val/acc"
SCORED_ON = "validation splits only (grouped, carved from each fold's training folds); no test fold evaluated"
# every fold run of a trial: quiet consoles; later arguments (the user's) still win
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@dataclass
class StudySettings:
    """What one study is: its name, folder, storage, the folds that score it, the base config's
    ``fit`` options, its resolved config and the space."""

    name: str
    study_dir: Path
    storage: str
    folds: list[int]
    fit_args: list[str]
    base_config: dict
    space: Space
    pruner: str = "median"
    restart: bool = False
    worker: int = 0
    epochs: int = field(init=False)

    def __post_init__(self) -> None:
        self.epochs = int(flat_settings(self.base_config).get("trainer.max_epochs") or 1)

    def trial_dir(self, number: int) -> Path:
        return self.study_dir / "trials" / f"trial{number:03d}"


def parse_fit(fit_args: list[str]) -> dict:
    """The config ``fit_args`` resolve to (``training.fold.requested_config``); options LightningCLI
    refuses are one ``ESC50Error`` line (its message), not its usage text and exit."""
    from esc50_lightning.training.fold import requested_config

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return requested_config(fit_args)
    except SystemExit:
        text = err.getvalue()
        message = text.split("error:", 1)[1] if "error:" in text else text
        raise ESC50Error(re.sub(r"\s+", " ", message).strip()[:400] or "the fit options were refused") from None


def report_step(fold_index: int, epoch: int, epochs: int) -> int:
    """Fold ``fold_index``'s epochs take steps ``fold_index * (epochs + 1) + epoch``; the running
    mean after it takes the step after its last epoch."""
    return fold_index * (epochs + 1) + epoch


def process_tag(pid: int) -> str | None:
    """``pid``'s start time (Linux): tells a live process from a later one given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "tag": process_tag(os.getpid())}


class ReportToTrial(Callback):
    """Report each epoch's validation accuracy of a fold to the Optuna trial, and prune it when
    the pruner says so (optuna-integration's ``PyTorchLightningPruningCallback`` reports at
    step = epoch, which the next fold's epochs would repeat: this one lays the folds end to end)."""

    def __init__(self, trial: optuna.Trial, fold: int, fold_index: int, epochs: int) -> None:
        self.trial, self.fold, self.fold_index, self.epochs = trial, fold, fold_index, epochs
        self.curve: dict[int, float] = {}

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(MONITOR)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.curve[epoch] = float(value)
        self.trial.report(float(value), report_step(self.fold_index, epoch, self.epochs))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"fold {self.fold} epoch {epoch + 1}: validation accuracy {float(value):.4f}")


def claim_folder(settings: StudySettings, trial: optuna.Trial) -> Path:
    """The trial's folder; a trial re-run after a kill takes over its predecessor's (finished
    folds are kept, a part-trained one resumes from its checkpoint)."""
    target = settings.trial_dir(trial.number)
    history = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("retry_history") or []
    for number in reversed(history):
        old = settings.trial_dir(number)
        if old.is_dir() and not target.exists():
            old.rename(target)
            print(f"trial {trial.number}: re-run of trial {number} (stopped part-way); its finished folds kept",
                  flush=True)
            break
    target.mkdir(parents=True, exist_ok=True)
    return target


def fold_score_file(fold_dir: FoldDir) -> Path:
    return fold_dir.path / "validation.json"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_trial(settings: StudySettings, trial: optuna.Trial, values: dict, trial_dir: Path) -> dict[int, float]:
    """Train and score the trial's folds in turn; returns ``{fold: validation accuracy}``."""
    from esc50_lightning.training.fold import run_fold

    args = [*QUIET, *settings.fit_args, *settings.space.arguments(values)]
    epochs = int(values.get("trainer.max_epochs", settings.epochs))
    scores: dict[int, float] = {}
    for index, fold in enumerate(settings.folds):
        fold_dir = FoldDir(trial_dir, fold)
        saved = read_json(fold_score_file(fold_dir))
        if saved is None:
            reporter = ReportToTrial(trial, fold, index, epochs)
            try:
                result = run_fold(args, fold_dir, restart=True, test=False, callbacks=[reporter])
            except optuna.TrialPruned:
                shutil.rmtree(fold_dir.checkpoint.parent, ignore_errors=True)  # pruned: never resumed
                raise
            except SystemExit:  # LightningCLI refused the options (its message is above): a failed trial
                raise ESC50Error(f"trial {trial.number}: fold {fold}: the options were refused (see above)") from None
            saved = {"fold": fold, "val_accuracy": result["validation"][MONITOR], "validation": result["validation"],
                     "epochs": result["epochs"], "train_seconds": result["train_seconds"],
                     "curve": reporter.curve, "scored_on": SCORED_ON}
            write_json_atomic(fold_score_file(fold_dir), saved)
            shutil.rmtree(fold_dir.checkpoint.parent, ignore_errors=True)  # scored: never trained again
        else:
            for epoch, value in sorted((int(e), v) for e, v in saved.get("curve", {}).items()):
                trial.report(value, report_step(index, epoch, epochs))
        scores[fold] = saved["val_accuracy"]
        trial.set_user_attr(f"fold{fold}_val_accuracy", round(saved["val_accuracy"], 6))
        trial.set_user_attr(f"fold{fold}_train_seconds", saved["train_seconds"])
        mean = sum(scores.values()) / len(scores)
        print(f"trial {trial.number}: fold {fold} validation accuracy {saved['val_accuracy']:.4f} "
              f"(running mean {mean:.4f} over {len(scores)} fold(s))", flush=True)
        trial.report(mean, report_step(index, epochs, epochs))
        if index + 1 < len(settings.folds) and trial.should_prune():
            raise optuna.TrialPruned(f"after fold {fold}: running mean {mean:.4f}")
    return scores


def objective(settings: StudySettings):
    def run(trial: optuna.Trial) -> float:
        from esc50_lightning.training.tune_report import write_trial_row

        values = settings.space.suggest(trial)
        for key in [k for k in trial.user_attrs if k.startswith("fold") or k in ("stopped", "pruned_at")]:
            trial.set_user_attr(key, None)  # a re-run starts its own record
        trial.set_user_attr("worker", worker_record())
        trial.set_user_attr("scored_on", SCORED_ON)
        trial.set_user_attr("test_folds_evaluated", False)
        trial.set_user_attr("seed", flat_settings(settings.base_config).get("seed_everything"))
        trial_dir = claim_folder(settings, trial)
        print(f"trial {trial.number}: {json.dumps(values)} in {trial_dir}", flush=True)
        scores: dict[int, float] = {}
        state = "complete"
        try:
            scores = run_trial(settings, trial, values, trial_dir)
            return sum(scores.values()) / len(scores)
        except optuna.TrialPruned as pruned:
            state = "pruned"
            trial.set_user_attr("pruned_at", str(pruned))
            raise
        except KeyboardInterrupt:
            state = None
            trial.set_user_attr("stopped", "interrupted")
            raise
        except BaseException:
            state = None
            raise
        finally:
            if state:
                write_trial_row(settings, trial.number, values, state, trial_dir)
    return run
