"""The fault suite (issue 34): what a sweep survives and what it refuses, on small trees the tests
make. No network (a loopback server), no timing: each fault is made to happen (a real SIGKILL, a
truncated file, a second sweep, a failing fold), then the next run is checked for the full result
or a one-line refusal, and for nothing lost. ``docs``' table of faults names these tests."""

import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

import esc50_lightning.commands.sweep as sweep_command
from esc50_lightning.cli import main
from esc50_lightning.commands.sweep import parse
from esc50_lightning.data.download import ensure_dataset
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training import executors
from esc50_lightning.training.sweep import FoldDir, lock_file, token_file

from .conftest import make_archive, make_tree
from .test_cli import fast_args
from .test_download import CountingHandler


def short_args(root, cache, epochs=1):
    """``fast_args`` on 1-second clips: the cheapest fold that still trains and tests."""
    return [*fast_args(root, cache, epochs=epochs), "--data.clip_seconds=1.0"]


@pytest.fixture(scope="module")
def short_root(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("faults") / "ESC-50-master", seconds=1.0)


@pytest.fixture(scope="module")
def trained(short_root, tmp_path_factory):
    """``(sweep_dir, args)``: folds 1 and 2 trained for one epoch and tested; tests damage copies."""
    work = tmp_path_factory.mktemp("trained")
    args = short_args(short_root, work / "cache")
    main(["sweep", *args, "--folds", "1", "2", "--sweep_dir", str(work / "sweep")])
    return work / "sweep", args


@pytest.fixture
def sweep_copy(trained, tmp_path):
    sweep_dir, args = trained
    return shutil.copytree(sweep_dir, tmp_path / "sweep"), args


def error_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_duplicate_folds_run_and_count_once(sweep_copy, capsys):
    assert parse(["--folds", "1", "1", "2", "--jobs", "2"])[0].folds == [1, 2]
    sweep_dir, args = sweep_copy
    main(["sweep", *args, "--folds", "1", "1", "--sweep_dir", str(sweep_dir)])
    result = json.loads((sweep_dir / "results.json").read_text())
    assert [f["fold"] for f in result["runs"][0]["folds"]] == [1]  # not [1, 1]: counted once
    assert sum(map(sum, result["confusion_matrix"])) == 8  # one test fold of 8 clips


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the test's copy of the folder, not the fault
def test_a_truncated_result_is_tested_again_in_one_line(sweep_copy, capsys):
    """A kill while ``result.json`` is written (a full disk, a crash): the file is cut short and
    a temporary file is left; the next sweep says so in one line and tests the fold again from
    its checkpoint, training nothing."""
    sweep_dir, args = sweep_copy
    fold = FoldDir(sweep_dir, 1)
    whole = fold.result_file.read_text()
    fold.result_file.write_text(whole[: len(whole) // 2])
    (fold.path / f".{fold.result_file.name}.k1ll3d.tmp").write_text(whole[:100])
    capsys.readouterr()
    main(["sweep", *args, "--folds", "1", "2", "--sweep_dir", str(sweep_dir)])
    printed = capsys.readouterr()
    said = [line for line in printed.out.splitlines() if "unreadable" in line]
    assert said == [f"sweep conv1d: fold 1: {fold.result_file} is unreadable (interrupted while written?); "
                    "testing the fold again from its checkpoint"]
    assert "Traceback" not in printed.err
    before, after = json.loads(whole), fold.result()
    # the training time the checkpoint holds: the last moments after its save are not in it
    assert after["epochs"] == before["epochs"] == 1
    assert after["train_seconds"] == round(fold.checkpoint_progress()[1], 1) <= before["train_seconds"]
    assert after["confusion_matrix"] == before["confusion_matrix"]  # the same weights, tested again
    assert FoldDir(sweep_dir, 2).result() is not None


def test_a_changed_setting_on_resume_is_refused_in_one_line_and_restart_starts_over(sweep_copy, capsys):
    sweep_dir, args = sweep_copy
    fold = FoldDir(sweep_dir, 1)
    fold.result_file.unlink()  # killed after its last checkpoint: part-trained
    stamp = fold.checkpoint.stat().st_mtime_ns
    base = ["sweep", *args, "--folds", "1", "--sweep_dir", str(sweep_dir)]
    refused = {"--model.optimizer.init_args.lr=0.0001": "model.optimizer.init_args.lr 0.002 -> 0.0001",
               # a changed architecture was a load_state_dict traceback
               "--model.net.init_args.channels=[32, 32]": "model.net.init_args.channels [256, 256] -> [32, 32]"}
    for changed, named in refused.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main([*base, changed])
        assert exit_.value.code == 2
        (line,) = error_lines(capsys)
        assert line.startswith(f"esc50-lightning: error: fold 1 in {fold.path} was trained with other settings (")
        assert named in line and "--restart" in line
    assert fold.checkpoint.stat().st_mtime_ns == stamp and not fold.result_file.exists()  # nothing touched
    main([*base, "--folds", "1", "2", "--model.optimizer.init_args.lr=0.0001", "--restart"])
    for k in (1, 2):  # the part-trained fold and the tested one: both trained afresh with the new setting
        result = FoldDir(sweep_dir, k).result()
        assert result["resumed"] is False and result["config"]["model"]["optimizer"]["init_args"]["lr"] == 0.0001


def test_a_resume_where_auto_would_resolve_otherwise_is_refused_in_one_line(short_root, tmp_path, monkeypatch, capsys):
    """Each fold records the precision, compile and layout it ran with (its result and its
    checkpoint). A fold started in fp32 on a CPU without native bf16 and resumed where ``auto``
    means bf16 would train its second half otherwise: refused in one line; pinning what it ran
    with resumes it."""
    from .test_cli import no_native_bf16

    sweep_dir = tmp_path / "sweep"
    base = ["sweep", *short_args(short_root, tmp_path / "cache"), "--trainer.precision=auto", "--folds", "1",
            "--sweep_dir", str(sweep_dir)]
    no_native_bf16(monkeypatch, native=False)
    main(base)
    fold = FoldDir(sweep_dir, 1)
    ran = {"trainer.precision": "32-true", "model.compile": False, "model.channels_last": None}
    assert fold.result()["resolved"] == ran
    fold.result_file.unlink()  # killed after its last checkpoint: part-trained
    assert fold.trained_resolved() == ran  # what the checkpoint records
    stamp = fold.checkpoint.stat().st_mtime_ns
    no_native_bf16(monkeypatch, native=True)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(base)
    assert error_lines(capsys)[-1] == (
        f"esc50-lightning: error: fold 1 in {fold.path} was trained with other settings (trainer.precision 'auto' "
        "(ran as '32-true') -> 'auto' (runs as 'bf16-mixed' here)); add --restart to train it afresh, pin "
        "--trainer.precision 32-true to go on as it ran, or use a new --sweep_dir")
    assert fold.checkpoint.stat().st_mtime_ns == stamp and not fold.result_file.exists()
    main([*base, "--trainer.precision=32-true"])
    result = fold.result()
    assert result["resumed"] is True and result["resolved"] == ran


def test_on_ray_the_worker_refuses_a_changed_setting_and_never_resumes_a_foreign_checkpoint(sweep_copy, tmp_path,
                                                                                           monkeypatch):
    """``fold_task`` as a Ray worker runs it. Seeing the driver's folder (its token), the worker
    applies the settings check; not seeing it (no shared filesystem), it trains in a private
    folder, so a checkpoint an earlier, deleted sweep left at the same path is never resumed."""
    sweep_dir, args = sweep_copy
    fold = FoldDir(sweep_dir, 1)
    fold.result_file.unlink()
    changed = [*args, "--model.optimizer.init_args.lr=0.0001"]
    token_file(sweep_dir).write_text("this-run")
    stamp = fold.checkpoint.stat().st_mtime_ns
    with pytest.raises(ESC50Error, match=r"fold 1 in .* was trained with other settings \(model.optimizer"):
        executors.fold_task(changed, 1, str(sweep_dir), False, "this-run")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    files = executors.fold_task(changed, 1, str(sweep_dir), False, "another-run")  # a worker elsewhere
    result = json.loads(files[fold.result_file.name])
    assert result["resumed"] is False and result["epochs"] == 1
    assert result["config"]["model"]["optimizer"]["init_args"]["lr"] == 0.0001
    assert fold.checkpoint.stat().st_mtime_ns == stamp and not fold.result_file.exists()  # the stale folder as it was
    assert not list(tmp_path.glob("esc50-fold1-*"))  # the private folder is gone
    assert not any(fold.is_checkpoint_file(fold.path / name) for name in files)


def fake_ray(outcomes):
    """A ``ray`` module whose tasks run at once: ``outcomes[fold]`` is the files a fold returns,
    or the exception its task raised; ``wait`` hands back the first pending task."""
    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        def __init__(self, cause):
            super().__init__(f"task failed\n{cause}")
            self.cause = cause

    class Ref:
        def __init__(self, outcome):
            self.outcome = outcome

    def remote(**resources):
        def wrap(function):
            return types.SimpleNamespace(remote=lambda fit_args, fold, sweep_dir, restart, token: Ref(outcomes[fold]))
        return wrap

    def get(ref):
        if isinstance(ref.outcome, Exception):
            raise RayTaskError(ref.outcome)
        return ref.outcome

    return types.SimpleNamespace(is_initialized=lambda: True, cluster_resources=lambda: {"CPU": 2.0}, remote=remote,
                                 wait=lambda refs, num_returns: (refs[:1], refs[1:]), get=get,
                                 exceptions=types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError))


def test_on_ray_one_failed_fold_does_not_abandon_the_others(tmp_path, monkeypatch, capsys):
    files = {"config.yaml": b"trainer: {}\n", "result.json": b'{"fold": 2}\n'}
    monkeypatch.setitem(sys.modules, "ray", fake_ray({1: ESC50Error("fold 1 broke"), 2: files,
                                                      3: RuntimeError("worker out of memory")}))
    with pytest.raises(ESC50Error, match=r"^folds 1, 3 failed on Ray \(see above\)"):
        executors.run_ray([], [1, 2, 3], tmp_path, None, None)
    assert error_lines(capsys) == ["fold 1 failed on Ray: fold 1 broke", "fold 3 failed on Ray: worker out of memory"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "fold2").iterdir()} == files  # fold 2's files, saved
    assert len(token_file(tmp_path).read_text()) == 32  # this run's fresh token, for the workers to compare


def test_on_ray_returned_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """The driver interrupted while it saves a fold's files (Ctrl-C at the last write): no
    truncated ``result.json``, no temporary file; the result is written last."""
    files = {"result.json": b'{"fold": 1}\n', "config.yaml": b"trainer: {}\n"}
    monkeypatch.setitem(sys.modules, "ray", fake_ray({1: files}))
    real_fsync, calls = os.fsync, []

    def interrupted(fd):
        calls.append(fd)
        if len(calls) == 3:  # token file, config.yaml, then result.json
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr("esc50_lightning.atomic.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        executors.run_ray([], [1], tmp_path, None, None)
    assert sorted(p.name for p in (tmp_path / "fold1").iterdir()) == ["config.yaml"]


def test_a_sweep_killed_mid_epoch_resumes_and_records_every_epoch(short_root, tmp_path, capsys):
    """``kill -9`` of a sweep once its fold has a checkpoint; the next sweep resumes it (the dead
    sweep's folder lock does not block it) and the result counts every epoch and second."""
    sweep_dir, epochs = tmp_path / "sweep", 6
    args = [*short_args(short_root, tmp_path / "cache", epochs), "--folds", "1", "--sweep_dir", str(sweep_dir)]
    fold = FoldDir(sweep_dir, 1)
    output = open(tmp_path / "victim.log", "w")
    victim = subprocess.Popen([sys.executable, "-m", "esc50_lightning", "sweep", *args], cwd=tmp_path,
                              stdout=output, stderr=subprocess.STDOUT)
    for _ in range(6000):  # up to ~2 minutes on a loaded machine; ends as soon as the file is there
        if fold.checkpoint.exists() or victim.poll() is not None:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "victim.log").read_text()[-2000:]
    output.close()
    trained, seconds = fold.checkpoint_progress()
    assert trained < epochs and not fold.result_file.exists()  # killed part-way
    main(["sweep", *args])
    assert f"fold 1: resuming from {fold.checkpoint}" in capsys.readouterr().out
    result = fold.result()
    assert result["resumed"] is True and result["epochs"] == epochs
    assert result["train_seconds"] >= round(seconds, 1)


def test_a_second_sweep_into_the_same_folder_is_refused_in_one_line(sweep_copy, monkeypatch, capsys):
    sweep_dir, args = sweep_copy
    command = ["sweep", *args, "--folds", "1", "2", "--sweep_dir", str(sweep_dir)]
    second = []

    def aggregate_after_a_second_sweep(*a, **k):  # inside the first sweep, which holds the folder
        with pytest.raises(SystemExit) as exit_:
            main(command)
        second.append((exit_.value.code, error_lines(capsys)))
        return aggregate(*a, **k)

    aggregate = sweep_command.aggregate
    monkeypatch.setattr(sweep_command, "aggregate", aggregate_after_a_second_sweep)
    stamps = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("fold*/*") if p.is_file()}
    main(command)
    assert stamps == {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("fold*/*") if p.is_file()}  # nothing touched
    ((code, lines),) = second
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"esc50-lightning: error: {sweep_dir} is in use by another sweep "
                               f"(pid {os.getpid()} on {socket.gethostname()}, started 20")
    assert "another --sweep_dir" in lines[0]
    main(command)  # the first sweep has ended: its lock is free again
    assert lock_file(sweep_dir).exists()


@pytest.fixture
def fresh_machine(short_root, tmp_path, monkeypatch):
    """No ``ESC50_ROOT``, an empty cache; the sweep driver's downloads come from a loopback server
    serving the tree's archive. Yields the downloads served."""
    CountingHandler.payload = make_archive(short_root, tmp_path / "master.zip").read_bytes()
    CountingHandler.served = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("ESC50_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    url = f"http://127.0.0.1:{server.server_port}/master.zip"
    monkeypatch.setattr(sweep_command, "ensure_dataset", functools.partial(ensure_dataset, url=url))
    yield CountingHandler.served
    server.shutdown()


def test_jobs_on_a_fresh_machine_download_once_and_a_failed_fold_stops_the_queue(short_root, tmp_path, fresh_machine,
                                                                                 monkeypatch, capsys):
    """``--jobs 2`` on a fresh machine: the driver installs the dataset once, then starts folds
    (whose processes would otherwise all download at once; offline they would fail). Fold 1
    fails in its process: it is reported in one line at once, queued fold 3 never starts,
    running fold 2 finishes and is kept, then one error. The fold's log keeps every attempt."""
    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / "sweep"
    args = [a for a in short_args(short_root, tmp_path / "cache") if not a.startswith("--data.root")]
    FoldDir(sweep_dir, 1).config_file.parent.mkdir(parents=True)
    FoldDir(sweep_dir, 1).config_file.write_text("trainer:\n  max_epochs: 7\n")  # another run's fold 1
    command = ["sweep", *args, "--jobs", "2", "--sweep_dir", str(sweep_dir)]
    with pytest.raises(SystemExit):
        main([*command, "--folds", "1", "2", "3"])
    printed = capsys.readouterr()
    log = FoldDir(sweep_dir, 1).log_file
    assert [line for line in printed.err.splitlines() if "fold" in line] == [
        "fold 1 failed (exit status 2): esc50-lightning: error: fold 1 in "
        f"{FoldDir(sweep_dir, 1).path} was trained with other settings (trainer.max_epochs 7 -> 1); add --restart to "
        f"train it afresh, or use a new --sweep_dir (see {log})",
        "esc50-lightning: error: fold 1 failed (see above); not started: 3; the other folds' results are kept, and "
        "the same command resumes the sweep"]
    assert "fold 3: started" not in printed.out and not FoldDir(sweep_dir, 3).path.exists()
    assert FoldDir(sweep_dir, 1).config_file.read_text() == "trainer:\n  max_epochs: 7\n"  # the other run's, kept
    assert FoldDir(sweep_dir, 2).result()["epochs"] == 1  # the running fold finished
    assert len(fresh_machine) == 1  # one download, by the driver, before any fold started
    with pytest.raises(SystemExit):
        main([*command, "--folds", "1"])
    headers = [line for line in log.read_text().splitlines() if line.startswith("=== ")]
    assert len(headers) == 2 and all(f"esc50-lightning fold-worker 1 {sweep_dir} " in h for h in headers)
    assert log.read_text().count("was trained with other settings") == 2  # the first attempt's output kept
    assert len(fresh_machine) == 1


def test_a_mistyped_root_stops_the_sweep_before_any_fold(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "dtaa" / "ESC-50-master"
    with pytest.raises(SystemExit):
        main(["sweep", *short_args(typo, tmp_path / "cache"), "--folds", "1", "2", "--jobs", "2",
              "--sweep_dir", str(tmp_path / "sweep")])
    (line,) = error_lines(capsys)
    assert line.startswith(f"esc50-lightning: error: {typo}: no ESC-50 dataset here")
    assert not list((tmp_path / "sweep").glob("fold*")) and not typo.parent.exists()


def test_testing_a_checkpoint_on_a_fold_it_trained_on_is_refused_in_one_line(trained, capsys):
    sweep_dir, args = trained
    checkpoint = FoldDir(sweep_dir, 1).checkpoint  # held out fold 1, trained on folds 2-5
    with pytest.raises(SystemExit) as exit_:
        main(["test", *args, "--trainer.logger=false", f"--ckpt_path={checkpoint}", "--data.fold=2"])
    assert exit_.value.code == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"esc50-lightning: error: {checkpoint}: its test fold is 1, so --data.fold 2 would test")


def test_a_two_fold_sweep_leaves_runs_the_hparams_dashboard_lists(trained):
    """Issue 36 on a real sweep: the summary run is one HParams row with the mean, spread and each
    fold's accuracy, and each fold run carries its own test accuracy (not Lightning's -1)."""
    from .test_summary import dashboard

    sweep_dir, _ = trained
    result = json.loads((sweep_dir / "results.json").read_text())
    _, rows = dashboard(sweep_dir)
    hparams, metrics = next(row for name, row in rows.items() if name.endswith("summary"))
    assert hparams["kind"] == "sweep" and hparams["folds"] == 2 and hparams["model"] == "Conv1D"
    assert metrics["hp/accuracy_mean"] == pytest.approx(result["runs"][0]["mean"]["accuracy"])
    assert {f"hp/fold{k}_accuracy" for k in (1, 2)} <= set(metrics)
    for fold in (1, 2):
        _, fold_metrics = next(row for name, row in rows.items() if name.endswith(f"fold{fold}"))
        tested = json.loads(FoldDir(sweep_dir, fold).result_file.read_text())["accuracy"]
        assert fold_metrics["hp/test_accuracy"] == pytest.approx(tested)
