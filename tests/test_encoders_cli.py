"""A pretrained encoder through every command: fit with a published-format weights file, sweep (two
folds), ensemble, classify, export (ONNX Runtime equal to eager), embed, then classical on the
embeddings; bad weights from the CLI in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esc50_lightning.cli import main
from esc50_lightning.training.sweep import FoldDir

from .reference.panns_reference import REFERENCES, randomise
from .test_cli import CONFIGS
from .test_ensemble import error_line

# a tiny Cnn14_16k (channels / 32): every block of the real network, at a test's cost
TINY = ["--model.net.init_args.model=Cnn14_16k", "--model.net.init_args.width=0.03125",
        "--model.net.init_args.weights=null", "--data.sample_rate=16000"]


def encoder_args(root, cache, config="panns_cnn14.yaml", epochs=1, net=TINY):
    return [f"--config={CONFIGS / config}", f"--data.root={root}", f"--data.cache_dir={cache}",
            "--data.allow_subset=true", "--data.val_fraction=0.25", "--data.batch_size=8", "--data.clip_seconds=1.0",
            *net, f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.precision=32-true"]


@pytest.fixture(scope="module")
def sweeps(tiny_root, tmp_path_factory):
    """Two one-epoch sweeps (seeds 0 and 1) of the tiny encoder over folds 1 and 2."""
    work = tmp_path_factory.mktemp("encoder_sweeps")
    dirs = []
    for seed in (0, 1):
        sweep_dir = work / f"panns_s{seed}"
        main(["sweep", *encoder_args(tiny_root, work / "cache"), f"--seed_everything={seed}", "--folds", "1", "2",
              "--sweep_dir", str(sweep_dir)])
        dirs.append(sweep_dir)
    return dirs


def test_sweep_ensemble_classify_and_export(sweeps, tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = json.loads((sweeps[0] / "results.json").read_text())
    assert [f["fold"] for f in result["runs"][0]["folds"]] == [1, 2]
    capsys.readouterr()
    # no --folds: the folds every member has, 1 and 2
    main(["ensemble", *map(str, sweeps), "--name", "pair", "--results", str(tmp_path / "e.json")])
    assert "| `pair` | 2 |" in capsys.readouterr().out
    ckpts = [str(FoldDir(s, 1).checkpoint) for s in sweeps]
    clip = sorted((tiny_root / "audio").glob("1-*.wav"))[0]
    main(["classify", "--ckpt", *ckpts, str(clip), "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert answer["results"][0]["file"] == str(clip) and len(answer["results"][0]["top"]) == 5
    for ckpt in (ckpts[:1], ckpts):  # one model, then both as one graph
        out = tmp_path / f"m{len(ckpt)}.onnx"
        main(["export", "--ckpt", *ckpt, "--format", "onnx", "--out", str(out)])
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["sample_rate"] == 16000 and meta["input_samples"] == 16000
        import onnxruntime as ort

        from esc50_lightning.training.checkpoints import load_ensemble

        wave = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
        with torch.no_grad():
            eager = load_ensemble(ckpt).module(wave).numpy()
        onnx = ort.InferenceSession(str(out)).run(None, {"waveform": wave.numpy()})[0]
        np.testing.assert_allclose(onnx, eager, atol=1e-4, rtol=1e-4)
    main(["export", "--ckpt", ckpts[0], "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(wave), torch.tensor(load_ensemble(ckpts[:1]).module(wave).numpy()))


def test_embed_then_classical_on_the_embeddings(sweeps, tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt = str(FoldDir(sweeps[0], 1).checkpoint)
    out = tmp_path / "emb.npz"
    main(["embed", "--ckpt", ckpt, "--root", str(tiny_root), "--allow_subset", "true", "--out", str(out),
          "--cache_dir", str(tmp_path / "cache")])
    assert "embed: 40 clips x 64 dims" in capsys.readouterr().out
    with np.load(out) as z:
        assert z["embeddings"].shape == (40, 64) and sorted(set(z["fold"].tolist())) == [1, 2, 3, 4, 5]
        assert json.loads(str(z["encoder"]))["checkpoint"] == ckpt and len(z["target"]) == 40
    main(["classical", "--embeddings", str(out), "--models", "[logreg]", "--data.val_fraction", "0.25",
          "--results", str(tmp_path / "cl" / "results.json"), "--tensorboard", ""])
    result = json.loads((tmp_path / "cl" / "results.json").read_text())
    names = [run["name"] for run in result["runs"]]
    assert "emb|embedding|logreg|C=1.0|norm=True" in names
    assert all(len(run["folds"]) == 5 for run in result["runs"])
    clip = sorted((tiny_root / "audio").glob("2-*.wav"))[0]
    main(["embed", "--encoder", "esc50_lightning.models.encoders.PANNs", "--encoder.model", "Cnn6",
          "--encoder.width", "0.0625", "--out", str(tmp_path / "files.csv"), str(clip), str(clip)])
    import pandas as pd

    frame = pd.read_csv(tmp_path / "files.csv")
    assert list(frame.columns[:5]) == ["filename", "fold", "target", "category", "src_file"]
    assert frame.shape == (2, 5 + 32) and (frame["fold"] == 0).all()
    err = error_line(capsys, ["classical", "--embeddings", str(tmp_path / "files.csv"), "--tensorboard", ""])
    assert "outside the five folds" in err


def test_fit_from_a_published_format_file_and_bad_weights_in_one_line(tiny_root, tmp_path, monkeypatch, capsys):
    """The full-size Cnn6 (random weights saved as the published file): a few steps, then the
    checkpoint classifies on its own; a truncated or another model's file is one line."""
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"model": randomise(REFERENCES["Cnn6"]()).state_dict()}, weights)
    net = ["--model.net.init_args.model=Cnn6", f"--model.net.init_args.weights={weights}", "--data.sample_rate=32000"]
    args = [*encoder_args(tiny_root, tmp_path / "cache", net=net), "--data.clip_seconds=0.5",
            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    main(["fit", *args])
    ckpt = next(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    weights.unlink()  # the checkpoint holds the weights: nothing else is read
    clip = sorted((tiny_root / "audio").glob("*.wav"))[0]
    capsys.readouterr()
    main(["classify", "--ckpt", str(ckpt), str(clip)])
    assert capsys.readouterr().out.startswith(f"{clip} (5.00 s): ")
    weights.write_bytes(b"\x00" * 100)
    assert "not a readable torch checkpoint" in error_line(capsys, ["fit", *args])
    err = error_line(capsys, ["fit", *args, "--model.net.init_args.model=Cnn10"])
    assert "not a PANNs Cnn10 checkpoint" in err or "no Cnn10" in err or "not a readable" in err
    torch.save({"model": randomise(REFERENCES["Cnn6"]()).state_dict()}, weights)
    err = error_line(capsys, ["fit", *args, "--model.net.init_args.model=Cnn10"])
    assert "not a PANNs Cnn10 checkpoint" in err and "missing keys" in err and "mismatched shapes" in err
    err = error_line(capsys, ["fit", *args, "--data.sample_rate=16000"])
    assert "set --data.sample_rate 32000" in err
