"""Scaling out on the tiny tree: DDP on 2 CPU processes (gloo), folds in parallel processes,
folds as Ray tasks, and resuming an interrupted parallel sweep."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from esc50_lightning.cli import main
from esc50_lightning.training import ESC50CLI
from esc50_lightning.training.sweep import FoldDir

from .conftest import make_tree
from .test_cli import fast_args


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory):
    """The tiny tree with one clip of fold 1 dropped: 7 test clips, which 2 ranks cannot split
    evenly (a DistributedSampler would pad one rank with a repeated clip)."""
    root = make_tree(tmp_path_factory.mktemp("odd") / "ESC-50-master", seconds=1.0)
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    meta.drop(index=meta.index[meta["fold"] == 1][0]).to_csv(root / "meta" / "esc50.csv", index=False)
    return root


def sweep_json(folder):
    return json.loads((folder / "results.json").read_text())


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_two_processes_count_each_test_clip_once(odd_root, tmp_path, monkeypatch, strategy):
    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / strategy
    args = [*fast_args(odd_root, tmp_path / "cache", epochs=2), "--trainer.accelerator=cpu",
            f"--trainer.strategy={strategy}", "--trainer.devices=2"]
    run = subprocess.run([sys.executable, "-m", "esc50_lightning", "sweep", *args, "--folds", "1",
                          "--sweep_dir", str(sweep_dir)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads((sweep_dir / "fold1" / "result.json").read_text())
    assert result["devices"] == 2 and result["epochs"] == 2
    # the training time is recorded (ddp_spawn trained in other processes): at least the checkpoint's
    seconds = FoldDir(sweep_dir, 1).checkpoint_progress()[1]
    assert seconds > 0 and result["train_seconds"] >= round(seconds, 1)
    assert sum(map(sum, result["confusion_matrix"])) == 7  # not 8: no clip repeated to pad a rank
    # the same checkpoint tested on one device gives the same confusion matrix
    one = [a for a in args if "strategy" not in a and "devices" not in a]
    cli = ESC50CLI(args=[*one, "--data.fold=1", "--trainer.logger=false"], run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(sweep_dir / "fold1/checkpoints/last.ckpt"),
                     verbose=False)
    assert cli.model.confusion.tolist() == result["confusion_matrix"]
    assert sweep_json(sweep_dir)["runs"][0]["folds"][0]["accuracy"] == result["accuracy"]


def test_parallel_jobs_and_resume(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / "jobs"
    args = ["sweep", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--folds", "1", "2", "--jobs", "2",
            "--sweep_dir", str(sweep_dir)]
    main(args)
    result = sweep_json(sweep_dir)
    assert [f["fold"] for f in result["runs"][0]["folds"]] == [1, 2]
    assert sum(map(sum, result["confusion_matrix"])) == 16
    assert (sweep_dir / "fold1.log").exists() and (sweep_dir / "fold2.log").exists()
    # interrupted after its last checkpoint: fold 2 resumes, fold 1 is not trained again
    (sweep_dir / "fold2" / "result.json").unlink()
    fold1 = (sweep_dir / "fold1" / "result.json").stat().st_mtime_ns
    main(args)  # the same settings (another is refused: tests/test_faults.py)
    assert (sweep_dir / "fold1" / "result.json").stat().st_mtime_ns == fold1
    fold2 = json.loads((sweep_dir / "fold2" / "result.json").read_text())
    assert fold2["resumed"] is True and fold2["epochs"] == 1
    assert (sweep_dir / "fold2.log").read_text().count("=== ") == 2  # one header per attempt, both kept


def test_a_bad_option_stops_a_parallel_sweep_before_any_fold(tiny_root, tmp_path, monkeypatch, capsys):
    """The driver parses the folds' options once: a bad one is refused there, not once per fold
    process (a fold that fails in its process: tests/test_faults.py)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["sweep", *fast_args(tiny_root, tmp_path / "cache"), "--data.n_fft=not-a-number", "--folds", "1", "2",
              "--jobs", "2"])
    printed = capsys.readouterr()
    assert "not-a-number" in printed.err.strip().splitlines()[-1] and "Traceback" not in printed.err
    assert "started" not in printed.out and not list(tmp_path.rglob("fold*.log"))


def test_ray_executor_on_a_local_cluster(tiny_root, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep_dir = tmp_path / "ray"
        main(["sweep", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--folds", "1", "2",
              "--executor", "ray", "--sweep_dir", str(sweep_dir)])
    finally:
        ray.shutdown()
    result = sweep_json(sweep_dir)
    assert [f["fold"] for f in result["runs"][0]["folds"]] == [1, 2]
    assert sum(map(sum, result["confusion_matrix"])) == 16
    assert list((sweep_dir / "fold1").glob("events.out.tfevents.*"))
