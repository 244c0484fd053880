"""A newcomer's path: the main job says what it reached, ``predict`` writes its CSV, and a network
defined outside the package goes through ``fit``, ``test``, ``predict``, ``classify`` and ``export``
(docs/usage.md, "Bring your own network")."""

import csv
import json
import re
import textwrap

import pytest

from esc50_lightning.cli import main

from .conftest import FAST_DATA
from .test_cli import fast_args

MY_NET = textwrap.dedent('''
    """A network of one's own: built from (n_bins, n_frames, num_classes, ...), reads (batch, bins, frames)."""
    import torch
    from torch import nn


    class MyNet(nn.Module):
        def __init__(self, n_bins: int, n_frames: int, num_classes: int, hidden: int = 16) -> None:
            super().__init__()
            self.conv = nn.Conv1d(n_bins, hidden, kernel_size=3, padding=1)
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).mean(-1))
''')


@pytest.fixture
def my_package(tmp_path, monkeypatch):
    """``my_nets.MyNet`` importable from a folder of its own, as a user's package would be."""
    folder = tmp_path / "my_code"
    folder.mkdir()
    (folder / "my_nets.py").write_text(MY_NET)
    monkeypatch.syspath_prepend(str(folder))
    return "my_nets.MyNet"


def test_own_network_fits_tests_predicts_classifies_and_exports(tiny_root, tmp_path, monkeypatch, capsys,
                                                               my_package):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=2), f"--model.net.class_path={my_package}",
          "--model.net.init_args.hidden=8"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "| validation, " in out and "| clips | accuracy | precision | recall | F1 | loss |" in out
    reached = next(line for line in lines if line.startswith("fit: validation accuracy"))
    assert "after 2 epochs (test fold 1)" in reached
    run = tmp_path / "lightning_logs" / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert lines[-1] == f"fit: run in {run.relative_to(tmp_path)}; test it: esc50-lightning test --ckpt_path " \
                        f"{ckpt.relative_to(tmp_path)}"

    where = [f"--data.root={tiny_root}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.allow_subset=true",
             "--trainer.enable_progress_bar=false"]
    main(["test", f"--ckpt_path={ckpt}", *where])
    tested = re.search(r"test/acc\W+([\d.]+)", capsys.readouterr().out)
    assert tested, "test printed no accuracy"

    main(["predict", f"--ckpt_path={ckpt}", *where])
    out = capsys.readouterr().out
    written = tmp_path / "lightning_logs" / "version_2" / "predictions.csv"  # predict's own run folder (test: 1)
    assert f"-> {written.relative_to(tmp_path)}" in out
    rows = list(csv.DictReader(written.open()))
    assert len(rows) == 8 and {row["fold"] for row in rows} == {"1"}  # fold 1 of the tiny tree: 8 clips
    first = rows[0]
    assert first["predicted"] == first["class_1"] and first["probability"] == first["prob_1"]
    probs = [float(first[f"prob_{k}"]) for k in range(1, 6)]  # the model always has 50 outputs
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    right = sum(row["target"] == row["predicted"] for row in rows)
    assert f"{right} of 8 right" in out and right / 8 == pytest.approx(float(tested.group(1)))  # as `test` scored

    wav = next((tiny_root / "audio").glob("1-*.wav"))
    main(["classify", "--ckpt", str(ckpt), str(wav), "--json"])
    classified = json.loads(capsys.readouterr().out)
    assert classified and "top" in json.dumps(classified)

    onnx = tmp_path / "my_net.onnx"
    main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(onnx)])
    assert onnx.stat().st_size > 0


def test_predict_writes_where_it_is_told(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--trainer.logger=false",
          f"--trainer.default_root_dir={tmp_path / 'run'}"])
    ckpt = next((tmp_path / "run").rglob("last.ckpt"))
    target = tmp_path / "out" / "fold1.csv"
    main(["predict", f"--ckpt_path={ckpt}", f"--predictions={target}", "--trainer.logger=false",
          f"--data.root={tiny_root}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.allow_subset=true",
          "--trainer.enable_progress_bar=false"])
    assert f"-> {target.relative_to(tmp_path)}" in capsys.readouterr().out
    header = target.read_text().splitlines()[0].split(",")
    assert header[:5] == ["file", "fold", "target", "predicted", "probability"] and header[-1] == "prob_5"


def test_fit_without_validation_split_says_so(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--data.val_strategy=none"])
    out = capsys.readouterr().out
    assert "fit: no validation split; training accuracy" in out
    assert FAST_DATA["batch_size"]  # the fast settings the other tests share


def test_the_fit_table_names_the_clips_it_scored(tiny_root, tmp_path, monkeypatch, capsys):
    """With ``--trainer.limit_val_batches 1`` the last epoch's table says how many clips that batch
    held, not the whole split's."""
    from esc50_lightning.training.report import scored_clips

    assert scored_clips({"val": 160, "test": 400}, val_batches=2, batch_size=32) == {"val": 64, "test": 400}
    assert scored_clips({"val": 160}, val_batches=5, batch_size=32) == {"val": 160}
    assert scored_clips({"val": 160}, val_batches=1, batch_size=32, world_size=2) == {"val": 64}
    monkeypatch.chdir(tmp_path)
    counts = []
    for limit in ("1.0", "1"):  # the whole split, then one evaluation batch (4 x the training batch of 1)
        main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--data.batch_size=1",
              f"--trainer.limit_val_batches={limit}"])
        counts.append(int(re.search(r"\| validation, (\d+) clips \|", capsys.readouterr().out).group(1)))
    assert counts[0] > 4 and counts[1] == 4
