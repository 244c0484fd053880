"""Fold ensembles of sweeps, a model trained on every clip, and the held-out fold a test may use."""

import json
import shutil

import pytest
import torch

from esc50_lightning.cli import main
from esc50_lightning.training.sweep import FoldDir

from .test_cli import fast_args


@pytest.fixture(scope="module")
def sweeps(tiny_root, tmp_path_factory):
    """Two one-epoch sweeps of folds 1 and 2, seeds 0 and 1."""
    work = tmp_path_factory.mktemp("sweeps")
    dirs = []
    for seed in (0, 1):
        sweep_dir = work / f"conv1d_s{seed}"
        main(["sweep", *fast_args(tiny_root, work / "cache", epochs=1), f"--seed_everything={seed}",
              "--folds", "1", "2", "--sweep_dir", str(sweep_dir)])
        dirs.append(sweep_dir)
    return dirs


def error_line(capsys, argv):
    capsys.readouterr()  # what came before
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_ensemble_of_sweeps_is_a_sweep_shaped_result(sweeps, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ens" / "results.json"
    main(["ensemble", *map(str, sweeps), "--folds", "1", "2", "--results", str(out), "--name", "pair"])
    printed = capsys.readouterr().out
    assert "ensemble pair: fold 1: " in printed and "| `pair` | 2 |" in printed
    result = json.loads(out.read_text())
    assert result == json.loads((tmp_path / "lightning_logs/ensembles/pair/results.json").read_text())
    assert out.with_suffix(".md").is_file() and list((tmp_path / "lightning_logs/ensembles/pair/summary").iterdir())
    assert result["kind"] == "ensemble" and result["config"]["members"] == list(map(str, sweeps))
    assert [r["name"] for r in result["runs"]] == ["pair", "conv1d_s0", "conv1d_s1"]
    assert sum(map(sum, result["confusion_matrix"])) == 16  # folds 1 and 2: 8 clips each
    trained = json.loads((sweeps[0] / "fold1" / "result.json").read_text())["dataset"]["train_clips"]
    assert result["dataset"]["train_clips"] == trained < 40 - 8  # what the members trained on, not four folds
    for run in result["runs"]:
        assert [f["fold"] for f in run["folds"]] == [1, 2] and set(run["mean"]) == {"accuracy", "precision",
                                                                                    "recall", "f1"}
    for sweep_dir, run in zip(sweeps, result["runs"][1:]):  # each member scores as its sweep tested it
        assert [f["accuracy"] for f in run["folds"]] == [FoldDir(sweep_dir, k).result()["accuracy"] for k in (1, 2)]
    config = tmp_path / "pair.yaml"  # the same options from a config file (jsonargparse, as every command)
    config.write_text(f"sweep_dirs: [{sweeps[0]}, {sweeps[1]}]\nfolds: [1, 2]\nname: pair_from_file\n")
    main(["ensemble", "--config", str(config)])
    again = json.loads((tmp_path / "lightning_logs/ensembles/pair_from_file/results.json").read_text())
    assert again["runs"][0]["folds"] == result["runs"][0]["folds"]


def test_ensemble_with_shifts_and_refusals(sweeps, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["ensemble", *map(str, sweeps), "--folds", "1", "--tta_shifts", "3", "--name", "shifted"])
    result = json.loads((tmp_path / "lightning_logs/ensembles/shifted/results.json").read_text())
    assert result["config"]["tta_shifts"] == 3 and len(result["runs"][0]["folds"]) == 1
    other = tmp_path / "other_split"  # sweep 1's fold 1 as if trained with another validation split
    shutil.copytree(FoldDir(sweeps[1], 1).path, FoldDir(other, 1).path)
    ckpt = torch.load(FoldDir(other, 1).checkpoint, weights_only=False)
    ckpt["datamodule_hyper_parameters"]["seed"] = 7
    torch.save(ckpt, FoldDir(other, 1).checkpoint)
    err = error_line(capsys, ["ensemble", str(sweeps[0]), str(other), "--folds", "1"])
    assert "has data.seed=7" in err and "same fold and validation split" in err
    err = error_line(capsys, ["ensemble", str(sweeps[0]), str(other), "--folds", "1", "2"])
    assert "no fold 2 model" in err or "data.seed" in err
    err = error_line(capsys, ["ensemble", str(sweeps[0]), str(other), "--folds", "2"])
    assert "no fold 2 model" in err


def test_ensemble_defaults_to_the_folds_every_member_has_and_refuses_up_front(sweeps, tmp_path, monkeypatch, capsys):
    """Over two sweeps of folds 1-2, ``ensemble`` with no ``--folds`` scores folds 1 and 2 and says
    so (it used to score them, then stop on "no fold 3 model"); whatever cannot be combined (a fold
    a member lacks or has not finished, members of another split) is refused before any fold is
    scored."""
    monkeypatch.chdir(tmp_path)
    main(["ensemble", *map(str, sweeps), "--name", "both"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "ensemble both: folds 1, 2, the ones every member has"
    result = json.loads((tmp_path / "lightning_logs/ensembles/both/results.json").read_text())
    assert [f["fold"] for f in result["runs"][0]["folds"]] == [1, 2] and result["config"]["folds"] == [1, 2]
    partial = tmp_path / "partial"  # sweep 1 with fold 1 finished and fold 2 part-trained (no result yet)
    for k in (1, 2):
        shutil.copytree(FoldDir(sweeps[1], k).path, FoldDir(partial, k).path)
    FoldDir(partial, 2).result_file.unlink()
    main(["ensemble", str(sweeps[0]), str(partial), "--name", "one"])
    assert capsys.readouterr().out.splitlines()[0] == ("ensemble one: fold 1, the one every member has "
                                                       "(partial: fold 2 not finished)")
    other = tmp_path / "other_split"  # fold 1 as sweep 1's, fold 2 trained with another validation split
    for k in (1, 2):
        shutil.copytree(FoldDir(sweeps[1], k).path, FoldDir(other, k).path)
    ckpt = torch.load(FoldDir(other, 2).checkpoint, weights_only=False)
    ckpt["datamodule_hyper_parameters"]["seed"] = 7
    torch.save(ckpt, FoldDir(other, 2).checkpoint)
    for argv, named in ([["--folds", "1", "2", "3"], "no fold 3 model"], [["--folds", "2"], "partial: no fold 2 model"],
                        [["--folds", "1", "2"], "has data.seed=7"]):
        members = [str(sweeps[0]), str(partial if "partial" in named else other)]
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["ensemble", *members, *argv, "--name", "refused"])
        out, err = capsys.readouterr()
        assert exit_.value.code == 2 and "\n" not in err.strip() and named in err
        assert "ensemble refused: fold" not in out  # refused before a fold was scored
        assert not (tmp_path / "lightning_logs/ensembles/refused").exists()


def test_test_defaults_to_the_checkpoint_fold_and_refuses_trained_folds(sweeps, tiny_root, tmp_path, monkeypatch,
                                                                        capsys):
    from esc50_lightning.training.lightning_cli import ESC50CLI

    monkeypatch.chdir(tmp_path)

    ckpt = FoldDir(sweeps[0], 2).checkpoint  # held out fold 2
    base = ["test", *fast_args(tiny_root, tmp_path / "cache"), "--trainer.logger=false", f"--ckpt_path={ckpt}"]
    assert ESC50CLI(args=base).datamodule.fold == 2  # no --data.fold: the checkpoint's own
    err = error_line(capsys, [*base, "--data.fold=1"])
    assert err.endswith(f"{ckpt}: its test fold is 2, so --data.fold 1 would test it on clips it trained on; "
                        "leave --data.fold out to use the checkpoint's, or add --allow_trained_fold if you mean it")
    assert ESC50CLI(args=[*base, "--data.fold=1", "--allow_trained_fold"]).datamodule.fold == 1
    err = error_line(capsys, ["validate", *base[1:], "--data.seed=3"])
    assert "its validation split has data.seed=0, so --data.seed 3 would validate" in err


def test_fit_on_every_clip_then_test_refuses(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--data.fold=all"])
    assert "fold all: every clip trained on; no fold held out, so no test" in capsys.readouterr().out
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    assert torch.load(ckpt, weights_only=False)["datamodule_hyper_parameters"]["fold"] == "all"
    base = [*fast_args(tiny_root, tmp_path / "cache"), "--trainer.logger=false", f"--ckpt_path={ckpt}"]
    err = error_line(capsys, ["test", *base])
    assert err.endswith(f"{ckpt} was trained on every clip (data.fold all): there is no unseen fold to test on")
    assert "trained on every clip (data.fold all), so --data.fold 3" in error_line(capsys, ["test", *base,
                                                                                            "--data.fold=3"])
    err = error_line(capsys, ["sweep", *fast_args(tiny_root, tmp_path / "cache"), "--data.fold", "all"])
    assert "--data.fold all holds no fold out" in err


def test_every_clip_split_has_no_test_clips(tiny_root, tmp_path):
    from esc50_lightning.data import ESC50DataModule

    from .conftest import FAST_DATA

    dm = ESC50DataModule(root=str(tiny_root), fold="all", cache_dir=str(tmp_path), **FAST_DATA)
    dm.setup()
    assert len(dm.index["test"]) == 0 and len(dm.index["train"]) + len(dm.index["val"]) == 40
    assert len(dm.index["val"]) == 10  # val_fraction 0.25 of all five folds
