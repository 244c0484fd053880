"""``tune`` (issue 43): Optuna studies scored on validation splits, on tiny synthetic trees.

A study leaves its storage, HParams rows, pictures and a ``best.yaml`` that ``sweep`` runs; a
SIGKILL mid-trial loses no finished trial; two workers never run one trial; a pruned trial is
recorded as pruned; noise in place of the test fold's clips changes no objective (the test fold
is never read); a bad space is one line, before any trial."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import soundfile as sf

from esc50_lightning.cli import main
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.training import tune
from esc50_lightning.training.summary import EVENTS
from esc50_lightning.training.tune_space import Space

from .conftest import make_tree
from .test_cli import fast_args

SPACE = """\
model.optimizer.init_args.lr: {low: 1e-4, high: 1e-2, log: true}
model.net.init_args.dropout: {low: 0.0, high: 0.5}
model.net.init_args.channels: {choices: [[16, 16], [32, 32]]}
model.net.init_args.kernel_size: {low: 3, high: 5, step: 2}
"""


@pytest.fixture(scope="module")
def short_root(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("tune") / "ESC-50-master", seconds=1.0)


def tune_args(root, work, epochs=1, trials=3, folds=("1", "2"), space=SPACE, name="tiny"):
    space_file = work / "space.yaml"
    space_file.write_text(space)
    return [*fast_args(root, work / "cache", epochs=epochs), "--data.clip_seconds=1.0", "--space", str(space_file),
            "--trials", str(trials), "--folds", *folds, "--name", name, "--study_dir", str(work / "study")]


def load(work, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'study' / 'study.db'}")


def rows(study_dir):
    """Trial number -> the run folder holding its HParams row."""
    return {int(p.parent.name.removeprefix("trial")): p for p in sorted(Path(study_dir).glob("trials/*/summary"))
            if list(p.glob(f"{EVENTS}*"))}


def test_a_study_leaves_storage_rows_pictures_and_a_best_yaml_that_sweep_runs(short_root, tmp_path, capsys):
    args = tune_args(short_root, tmp_path)
    main(["tune", *args])
    study_dir = tmp_path / "study"
    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in trials:
        folds = [trial.user_attrs[f"fold{k}_val_accuracy"] for k in (1, 2)]
        assert trial.value == pytest.approx(sum(folds) / 2)  # the mean over the folds' validation splits
        assert trial.user_attrs["test_folds_evaluated"] is False and "validation" in trial.user_attrs["scored_on"]
        assert trial.user_attrs["seed"] == 0
        for fold in (1, 2):  # scored, no test result, no checkpoint left behind
            fold_dir = study_dir / "trials" / f"trial{trial.number:03d}" / f"fold{fold}"
            assert (fold_dir / "validation.json").exists() and not (fold_dir / "result.json").exists()
            assert not (fold_dir / "checkpoints").exists()
    assert sorted(rows(study_dir)) == [0, 1, 2]
    assert (study_dir / "history.png").stat().st_size > 0 and (study_dir / "importances.png").stat().st_size > 0
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["counts"]["complete"] == 3 and summary["best"]["number"] == study.best_trial.number
    best = study_dir / "best.yaml"
    text = best.read_text()
    assert f"best trial {study.best_trial.number}" in text and str(short_root) not in text  # no paths of this machine
    out = capsys.readouterr().out
    assert "3 of 3 trials finished (3 complete, 0 pruned)" in out
    main(["tune", "--status", "--name", "tiny", "--study_dir", str(study_dir)])
    status = capsys.readouterr().out
    assert "3 trials finished" in status and f"best so far trial {study.best_trial.number}" in status
    main(["tune", *args])  # the same command again: the study has its trials, nothing trains
    assert len(load(tmp_path).get_trials()) == 3 and "trial 3:" not in capsys.readouterr().out
    sweep_dir = tmp_path / "sweep"
    main(["sweep", "--config", str(best), f"--data.root={short_root}", f"--data.cache_dir={tmp_path / 'cache'}",
          "--folds", "1", "--sweep_dir", str(sweep_dir)])
    result = json.loads((sweep_dir / "results.json").read_text())
    best_values = Space.parse(yaml_load(tmp_path / "space.yaml"), result["config"]).values(study.best_trial.params)
    net = result["config"]["model"]["net"]["init_args"]
    assert net["dropout"] == best_values["model.net.init_args.dropout"]
    assert net["channels"] == best_values["model.net.init_args.channels"]
    assert result["config"]["trainer"]["max_epochs"] == 1  # the tune's command-line settings are in it too


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def test_a_changed_space_or_base_config_is_refused_in_one_line_and_restart_starts_afresh(short_root, tmp_path, capsys):
    main(["tune", *tune_args(short_root, tmp_path, trials=1, folds=("1",))])
    capsys.readouterr()
    wider = SPACE.replace("high: 0.5}", "high: 0.6}")
    with pytest.raises(SystemExit) as stop:
        main(["tune", *tune_args(short_root, tmp_path, trials=1, folds=("1",), space=wider)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1
    assert "model.net.init_args.dropout" in lines[0] and "--restart" in lines[0]
    with pytest.raises(SystemExit):
        main(["tune", *tune_args(short_root, tmp_path, trials=1, folds=("1",)), "--model.mixup_alpha=0.5"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "model.mixup_alpha 0.2 -> 0.5" in lines[0]
    main(["tune", *tune_args(short_root, tmp_path, trials=1, folds=("1",), space=wider), "--restart"])
    trials = load(tmp_path).get_trials()
    assert len(trials) == 1 and trials[0].distributions["model.net.init_args.dropout"].high == 0.6


def test_a_trial_killed_mid_way_is_run_again_and_every_finished_trial_is_kept(short_root, tmp_path, capsys):
    """``kill -9`` while the second trial trains its second fold; the same command then marks it
    failed (its process is gone: no heartbeat grace to wait for), runs its values again from its
    finished fold, and completes the study with the first trial as it was."""
    args = tune_args(short_root, tmp_path, epochs=2, trials=2)
    study_dir = tmp_path / "study"
    log = open(tmp_path / "victim.log", "w")
    victim = subprocess.Popen([sys.executable, "-m", "esc50_lightning", "tune", *args], cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT)
    target = study_dir / "trials" / "trial001" / "fold2" / "checkpoints" / "last.ckpt"
    for _ in range(12000):  # up to ~4 minutes on a loaded machine; ends once the fold has a checkpoint
        if target.exists() or victim.poll() is not None:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "victim.log").read_text()[-2000:]
    log.close()
    before = load(tmp_path).get_trials()
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    first, killed = before
    main(["tune", *args])
    out = capsys.readouterr().out
    after = load(tmp_path).get_trials()
    assert after[0].value == first.value and after[0].datetime_complete == first.datetime_complete  # kept
    assert after[1].state.name == "FAIL" and after[1].user_attrs["stopped"] == "killed"
    rerun = after[2]
    assert rerun.params == killed.params and rerun.state.name == "COMPLETE"
    assert "trial 2: re-run of trial 1" in out and "trial 2: fold 1 validation accuracy" in out
    assert [t.state.name for t in after] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert (study_dir / "trials" / "trial002" / "fold1" / "validation.json").exists()


def test_two_workers_never_run_the_same_trial(short_root, tmp_path, capsys):
    args = tune_args(short_root, tmp_path, trials=4, folds=("1",))
    main(["tune", *args, "--jobs", "2"])
    study = load(tmp_path)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) >= 4
    ran = {}
    for worker in (0, 1):
        text = (tmp_path / "study" / f"worker{worker}.log").read_text()
        ran[worker] = {t.number for t in study.get_trials() if f"trial {t.number}: {{" in text}
    assert not ran[0] & ran[1] and ran[0] | ran[1] == {t.number for t in study.get_trials()}
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both workers ran trials
    assert sorted(rows(tmp_path / "study")) == sorted(t.number for t in complete)


def test_a_pruned_trial_is_recorded_as_pruned(short_root, tmp_path, monkeypatch, capsys):
    """A pruner that stops every trial at its first report: each trial is pruned in fold 1's
    first epoch, recorded so in the storage, the status and its HParams row, and leaves no checkpoint."""
    monkeypatch.setattr(tune, "make_pruner", lambda *args: optuna.pruners.ThresholdPruner(lower=2.0))
    main(["tune", *tune_args(short_root, tmp_path, epochs=2, trials=2)])
    trials = load(tmp_path).get_trials()
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert trials[0].user_attrs["pruned_at"].startswith("fold 1 epoch 1: validation accuracy")
    assert list(trials[0].intermediate_values) == [0]
    assert sorted(rows(tmp_path / "study")) == [0, 1]
    assert not list((tmp_path / "study" / "trials").glob("*/fold*/checkpoints"))
    assert "2 of 2 trials finished (0 complete, 2 pruned)" in capsys.readouterr().out


def test_noise_in_place_of_the_test_fold_changes_no_objective(short_root, tmp_path, monkeypatch):
    """Scored on fold 1's validation split only: fold 1's own clips (its test fold) replaced
    with noise leave every trial's objective as it was; and no test loader is ever made."""

    def no_test(self):
        raise AssertionError("a search read a test fold")

    monkeypatch.setattr(ESC50DataModule, "test_dataloader", no_test)
    values = []
    for label in ("clean", "noisy"):
        root = shutil.copytree(short_root, tmp_path / label / "ESC-50-master")
        if label == "noisy":
            rng = np.random.default_rng(1)
            for path in (root / "audio").glob("1-*.wav"):
                data, rate = sf.read(path)
                sf.write(path, rng.standard_normal(data.shape) * 0.3, rate, subtype="PCM_16")
        work = tmp_path / label
        main(["tune", *tune_args(root, work, trials=2, folds=("1",))])
        values.append([t.value for t in load(work).get_trials()])
    assert values[0] == values[1]


@pytest.mark.parametrize("space, message", [
    ("model.net.init_args.dropot: {low: 0.0, high: 0.5}\n",
     "space: model.net.init_args.dropot: not a setting of the base config; did you mean model.net.init_args.dropout?"),
    ("model.net.init_args.dropout: {low: 0.5, high: 0.1}\n",
     "space: model.net.init_args.dropout: low 0.5 must be below high 0.1"),
    ("model.optimizer.init_args.lr: {low: 0, high: 0.1, log: true}\n", "a log range must start above 0"),
    ("model.net.init_args.kernel_size: {low: 3, high: 7.5}\n", "kernel_size: an integer setting needs whole numbers"),
    ("model.net.init_args.dropout: {low: 0.0, hihg: 0.5}\n", "unknown field 'hihg'"),
    ("data.n_mels: {choices: []}\n", "data.n_mels: choices must be a non-empty list"),
    ("data.fold: {choices: [1, 2]}\n", "data.fold: decides which clips score a trial"),
    ("model.net.init_args.channels: {choices: [[16, 16], 'wide']}\n",
     "model.net.init_args.channels: the config refuses 'wide'"),
])
def test_a_bad_space_is_one_line_before_any_trial(short_root, tmp_path, capsys, space, message):
    with pytest.raises(SystemExit) as stop:
        main(["tune", *tune_args(short_root, tmp_path, space=space)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert message in lines[0]
    assert not (tmp_path / "study").exists()  # no storage, no trial


def test_the_first_trial_is_the_base_config_when_the_space_holds_it():
    from esc50_lightning.training.tune_trial import parse_fit

    base = parse_fit([f"--config={Path(__file__).resolve().parents[1] / 'configs' / 'conv1d.yaml'}"])
    space = Space.load(Path(__file__).resolve().parents[1] / "configs" / "spaces" / "conv1d.yaml", base)
    baseline = space.baseline(base)
    assert baseline["model.net.init_args.channels"] == "[256, 256]" and baseline["data.n_mels"] == 128
    assert space.values(baseline)["model.net.init_args.channels"] == [256, 256]
    even = Space.parse({"model.net.init_args.kernel_size": {"low": 4, "high": 8, "step": 2}}, base)
    assert even.baseline(base) is None  # 5 is not on the grid: no baseline trial
