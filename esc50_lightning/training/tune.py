"""The study behind ``esc50-lightning tune``: storage, pruner, workers, and killed trials run again.

The study lives in an RDB storage (SQLite in the study folder unless a SQLAlchemy URL is given),
so workers in several processes or on several machines share it, Optuna giving each trial its
number once. Trials beat a heartbeat: one whose process stopped (killed, its machine gone) is
marked failed by the next worker and queued again with the same values, resuming its folds
(``training.tune_trial``); on its own machine a dead worker's trial is seen at once
(``rerun_killed_trials``). What defines the study (space, base config, folds) is stored with it,
and a run with other settings is refused in one line.
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.recipe import flat_settings, setting_differences
from esc50_lightning.training.tune_space import differences
from esc50_lightning.training.tune_trial import SCORED_ON, StudySettings, objective, process_tag

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RETRIES = 3  # a trial killed more often than this is left failed



def storage_url(study_dir: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(study_dir) / 'study.db').resolve()}"


def open_storage(url: str) -> RDBStorage:
    """The study's storage, with heartbeats: a trial whose process stopped beating (killed, its
    machine gone) is marked failed by the next worker and queued again with the same values."""
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: "experimental"
        return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=20, grace_period=90,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))


def make_pruner(kind: str, epochs: int, folds: int) -> optuna.pruners.BasePruner:
    """``median``: stop a trial below the median of the completed ones at the same step (after
    four completed trials and a quarter of the first fold); ``hyperband``: successive halving
    from a quarter of a fold up to every fold; ``none``."""
    warmup = max(1, epochs // 4)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=warmup)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=folds * (epochs + 1),
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(settings: StudySettings, create: bool = True) -> optuna.Study:
    """Load the study (or make it): one that was made with another space, base config or folds
    is refused in one line, unless ``restart`` deletes it (trials and folders) to start afresh."""
    storage = open_storage(settings.storage)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    record = {"space": settings.space.spec(), "base_config": settings.base_config, "folds": settings.folds}
    if settings.name in names and settings.restart:
        optuna.delete_study(study_name=settings.name, storage=storage)
        shutil.rmtree(settings.study_dir / "trials", ignore_errors=True)
        print(f"tune {settings.name}: --restart: the old study and its trials deleted")
        names.discard(settings.name)
    if settings.name not in names and not create:
        raise ESC50Error(f"no study {settings.name!r} in {settings.storage}")
    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=None)
    pruner = make_pruner(settings.pruner, settings.epochs, len(settings.folds))
    study = optuna.create_study(study_name=settings.name, storage=storage, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    attrs = study.user_attrs
    if not attrs:  # new: record what defines it; its first trial is the base config as it is
        for key, value in {**record, "objective": f"mean validation accuracy; {SCORED_ON}"}.items():
            study.set_user_attr(key, value)
        baseline = settings.space.baseline(settings.base_config)
        if baseline is not None:
            study.enqueue_trial(baseline, user_attrs={"baseline": True})
        return study
    changed = differences(attrs.get("space", {}), record["space"])
    changed += setting_differences(attrs.get("base_config", {}), record["base_config"])
    if attrs.get("folds") != record["folds"]:
        changed.append(f"folds {attrs.get('folds')} -> {record['folds']}")
    if changed:
        raise ESC50Error(f"study {settings.name} in {settings.storage} was made with other settings "
                         f"({'; '.join(changed)}); add --restart to start it afresh, or give another --name")
    return study


def seed_sampler(study: optuna.Study, worker: int, base_seed: int) -> None:
    """Seed the sampler from the study's length and the worker: reproducible, and no two workers,
    nor a re-run, draw the same random trials."""
    seed = base_seed + len(study.get_trials(deepcopy=False)) + 1000 * worker
    study.sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=seed)


def alive(record: dict) -> bool:
    pid = record.get("pid")
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return False
    return record.get("tag") is None or process_tag(pid) == record.get("tag")


def rerun_killed_trials(study: optuna.Study) -> list[int]:
    """Mark failed each running trial whose worker on this machine is gone (killed: no heartbeat
    grace to wait for), and queue once, with the same values, every trial that failed so
    (killed or interrupted, not an error of its own). Returns the trial numbers queued again."""
    storage, host = study._storage, socket.gethostname()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    queued = []
    for trial in trials:
        worker = trial.user_attrs.get("worker") or {}
        if trial.state == TrialState.RUNNING and worker.get("host") == host and not alive(worker):
            try:
                storage.set_trial_user_attr(trial._trial_id, "stopped", "killed")
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            trial = storage.get_trial(trial._trial_id)
        if trial.state == TrialState.FAIL and trial.number not in retried and \
                trial.user_attrs.get("stopped") in ("killed", "interrupted"):
            retry(study, trial)
            queued.append(trial.number)
    return queued


class StopAtTrials:
    """Stop this worker once the study's finished and other running trials reach ``trials``."""

    def __init__(self, trials: int) -> None:
        self.trials = trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if counted(study) >= self.trials:
            study.stop()


def counted(study: optuna.Study) -> int:
    """Trials finished (complete or pruned) or running: what a new trial would add to."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def run_worker(settings: StudySettings, trials: int, timeout: float | None, study: optuna.Study | None = None,
               rerun: bool = True) -> None:
    """Run trials until the study has ``trials`` finished ones (or ``timeout`` seconds pass);
    first, with ``rerun``, queue again the trials killed on this machine (``rerun_killed_trials``)."""
    study = study or open_study(settings)
    queued = rerun_killed_trials(study) if rerun else []
    if queued:
        print(f"tune {settings.name}: trial(s) {', '.join(map(str, queued))} stopped part-way: queued again "
              "with the same values", flush=True)
    seed_sampler(study, settings.worker, int(flat_settings(settings.base_config).get("seed_everything") or 0))
    left = trials - counted(study)
    if left <= 0:
        return
    study.optimize(objective(settings), n_trials=left, timeout=timeout, callbacks=[StopAtTrials(trials)],
                   gc_after_trial=True)
