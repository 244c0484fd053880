"""classify and export, on a model trained for a few steps on the synthetic tree."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from esc50_lightning.cli import main
from esc50_lightning.features.conv_stft import ConvPowerSpectrogram
from esc50_lightning.training.checkpoints import load_checkpoint
from esc50_lightning.training.inference import windows

from .test_cli import fast_args


@pytest.fixture(scope="module")
def ckpt(tiny_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    import os

    old = os.getcwd()
    os.chdir(work)
    try:
        main(["fit", *fast_args(tiny_root, work / "cache", epochs=3), "--data.val_strategy=none"])
    finally:
        os.chdir(old)
    (path,) = work.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return path


def test_checkpoint_alone_rebuilds_the_model(ckpt, tiny_root):
    model = load_checkpoint(ckpt)
    assert model.sample_rate == 8000 and model.clip_samples == 40000
    assert model.class_names[:4] == ["dog", "rooster", "rain", "crow"]
    out = model.module(torch.zeros(3, 40000))
    assert out.shape == (3, 50)


def test_checkpoint_of_a_compiled_model_loads_and_exports_uncompiled(ckpt, tmp_path):
    state = torch.load(ckpt, weights_only=False)
    state["hyper_parameters"]["compile"] = True  # as configs/cnn.yaml writes it
    compiled_ckpt = tmp_path / "compiled.ckpt"
    torch.save(state, compiled_ckpt)
    model = load_checkpoint(compiled_ckpt)
    assert all(m._compiled_call_impl is None for m in model.module.modules())
    out = tmp_path / "model.pt"
    main(["export", "--ckpt", str(compiled_ckpt), "--format", "torchscript", "--out", str(out)])
    assert torch.jit.load(str(out))(torch.zeros(1, 40000)).shape == (1, 50)


def test_checkpoint_written_before_the_input_pipeline_loads(ckpt, tmp_path):
    """Checkpoints of earlier versions kept the DataModule's normaliser alone, with the front-end
    settings in its hyper-parameters: they rebuild the same model, and test, classify and export."""
    state = torch.load(ckpt, weights_only=False)
    pipeline = state["ESC50DataModule"].pop("input_pipeline")
    state["ESC50DataModule"]["normalizer"] = pipeline["normalizer"]
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    wave = 0.1 * torch.randn(2, 40000)
    torch.testing.assert_close(load_checkpoint(old).module(wave), load_checkpoint(ckpt).module(wave))
    main(["export", "--ckpt", str(old), "--format", "torchscript", "--out", str(tmp_path / "old.pt")])
    assert torch.jit.load(str(tmp_path / "old.pt"))(wave).shape == (2, 50)


def test_windows_cover_long_files():
    wave = torch.arange(25.0)
    batch, starts = windows(wave, 10)
    assert starts == [0, 5, 10, 15] and batch.shape == (4, 10)
    assert batch[-1, -1] == 24
    short, starts = windows(torch.ones(3), 10)
    assert short.shape == (1, 10) and short.sum() == 3


def test_classify_unusual_inputs(ckpt, tmp_path, capsys):
    rng = np.random.default_rng(0)
    files = []
    for name, rate, seconds, channels, subtype in [
        ("short.wav", 8000, 0.05, 1, "PCM_U8"), ("long.flac", 96000, 60.0, 2, "PCM_24"),
        ("six.wav", 22050, 5.0, 6, "DOUBLE"), ("silence.ogg", 44100, 3.0, 1, "VORBIS"),
    ]:
        data = 0.1 * rng.standard_normal((int(rate * seconds), channels)) if "silence" not in name else \
            np.zeros((int(rate * seconds), channels))
        sf.write(tmp_path / name, data, rate, subtype=subtype)
        files.append(str(tmp_path / name))
    main(["classify", "--ckpt", str(ckpt), *files, "--json", "--top-k", "3", "--windows"])
    out = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in out["results"]] == files
    for r in out["results"]:
        assert len(r["top"]) == 3 and abs(sum(t["probability"] for t in r["top"])) <= 1.0001
    long = out["results"][1]
    assert long["seconds"] == 60.0 and len(long["windows"]) == 23  # 5 s windows, 2.5 s apart


def test_classify_bad_files(ckpt, tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(8000), 8000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(100, np.nan), 8000, subtype="FLOAT")
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--ckpt", str(ckpt), str(good), str(empty)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"esc50-lightning: error: {empty}: empty file"
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--ckpt", str(ckpt), str(empty), str(good), str(nan), str(tmp_path), "--skip-bad"])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert str(good) in captured.out
    assert captured.err.count("skipped:") == 3
    with pytest.raises(SystemExit):
        main(["classify", "--ckpt", str(tmp_path / "none.ckpt"), str(good)])
    assert "checkpoint not found" in capsys.readouterr().err


def test_conv_stft_matches_torch_stft():
    import torchaudio

    wave = torch.randn(2, 4000)
    for n_fft, win, hop in [(256, None, 128), (512, 400, 160)]:
        ref = torchaudio.transforms.Spectrogram(n_fft, win, hop, power=2.0, pad_mode="constant")(wave)
        torch.testing.assert_close(ConvPowerSpectrogram(n_fft, win, hop)(wave), ref, rtol=1e-3, atol=1e-3)


def test_export_torchscript_round_trip(ckpt, tmp_path):
    out = tmp_path / "model.pt"
    main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out)])
    exported = torch.jit.load(str(out))
    wave = torch.randn(3, 40000) * 0.1
    expected = load_checkpoint(ckpt).module(wave)
    torch.testing.assert_close(exported(wave), expected, atol=1e-4, rtol=1e-4)
    assert json.loads(out.with_suffix(".json").read_text())["sample_rate"] == 8000


def test_export_onnx_round_trip(ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(out)])
    wave = torch.randn(3, 40000) * 0.1
    expected = load_checkpoint(ckpt).module(wave).detach().numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"waveform": wave.numpy()})
    np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=1e-3)


def test_shift_averaging_in_evaluation_only():
    from esc50_lightning.models import MLP, AudioClassifier

    model = AudioClassifier(lambda b, f, c: MLP(b, f, c, hidden=8, dropout=0.0), input_shape=(4, 10), num_classes=5,
                            tta_shifts=5)
    x = torch.randn(3, 4, 10)
    model.eval()
    expected = torch.stack([model.net(torch.roll(x, 2 * k, -1)).softmax(-1) for k in range(5)]).mean(0)
    torch.testing.assert_close(model(x).exp(), expected)
    model.train()
    torch.testing.assert_close(model(x), model.net(x))


@pytest.fixture(scope="module")
def ckpt_b(tiny_root, tmp_path_factory):
    """A second tiny model, another seed: with ``ckpt`` an ensemble of two."""
    work = tmp_path_factory.mktemp("train_b")
    main(["fit", *fast_args(tiny_root, work / "cache", epochs=1), "--data.val_strategy=none",
          "--seed_everything=1", f"--trainer.default_root_dir={work}"])
    (path,) = work.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return path


def test_several_checkpoints_classify_as_one_model(ckpt, ckpt_b, tmp_path, capsys):
    from esc50_lightning.features.spectrogram import SpectrogramFrontend
    from esc50_lightning.training.checkpoints import load_ensemble

    model = load_ensemble([ckpt, ckpt_b])
    assert sum(isinstance(m, SpectrogramFrontend) for m in model.module.modules()) == 1  # one shared front end
    wave = 0.1 * torch.randn(3, 40000)
    members = [load_checkpoint(p).module(wave).softmax(-1) for p in (ckpt, ckpt_b)]
    torch.testing.assert_close(model.module(wave).exp(), torch.stack(members).mean(0))
    clip = tmp_path / "x.wav"
    sf.write(clip, 0.1 * np.random.default_rng(0).standard_normal(40000), 8000)
    outputs = []
    for argv in ([str(clip), "--ckpt", str(ckpt), str(ckpt_b)], ["--ckpt", str(ckpt), str(ckpt_b), str(clip)],
                 ["--ckpt", str(ckpt), str(ckpt_b), "--", str(clip)], ["--ckpt", str(ckpt), "--ckpt", str(ckpt_b),
                                                                       str(clip)]):
        main(["classify", "--json", *argv])
        outputs.append(json.loads(capsys.readouterr().out))
    assert all(o == outputs[0] for o in outputs) and outputs[0]["checkpoint"] == [str(ckpt), str(ckpt_b)]
    main(["classify", "--ckpt", str(ckpt), str(clip), "--json"])  # one checkpoint: the spelling of before
    assert json.loads(capsys.readouterr().out)["results"] != outputs[0]["results"]


def test_ensemble_with_other_input_settings_is_refused(ckpt, ckpt_b, tmp_path, capsys):
    state = torch.load(ckpt_b, weights_only=False)
    state["ESC50DataModule"]["input_pipeline"]["settings"]["f_min"] = 50.0
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(ckpt), str(other), "--out", str(tmp_path / "m.pt")])
    assert capsys.readouterr().err.strip() == (
        f"esc50-lightning: error: {other} has data.f_min=50.0, {ckpt} 0.0: an ensemble shares one front end, "
        "so its members' input settings must agree")


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_ensemble_matches_eager(ckpt, ckpt_b, tmp_path, fmt):
    from esc50_lightning.training.checkpoints import load_ensemble

    out = tmp_path / f"ensemble.{fmt}"
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    main(["export", "--ckpt", str(ckpt), str(ckpt_b), "--format", fmt, "--out", str(out)])
    wave = torch.randn(3, 40000) * 0.1
    expected = load_ensemble([ckpt, ckpt_b]).module(wave).detach().numpy()
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"waveform": wave.numpy()})
    else:
        logits = torch.jit.load(str(out))(wave).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, atol=1e-4)  # log of mean probabilities
    assert json.loads(out.with_suffix(".json").read_text())["checkpoint"] == [str(ckpt), str(ckpt_b)]


def test_export_metadata_never_overwrites_the_model(tmp_path):
    from esc50_lightning.commands.export import metadata_path

    assert metadata_path(tmp_path / "model.onnx") == tmp_path / "model.json"
    assert metadata_path(tmp_path / "model.json") == tmp_path / "model.json.meta.json"


def test_classify_and_export_take_their_options_from_a_config_file(ckpt, tmp_path, monkeypatch, capsys):
    """jsonargparse, as every command: ``--print_config`` writes the options given, ``--config``
    reads them back (the spellings on the command line are unchanged: ``--top-k``, ``--json``)."""
    clip = tmp_path / "x.wav"
    sf.write(clip, 0.1 * np.random.default_rng(1).standard_normal(40000), 8000)
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--ckpt", str(ckpt), str(clip), "--top-k", "2", "--print_config"])
    assert exit_.value.code == 0
    config = tmp_path / "classify.yaml"
    config.write_text(capsys.readouterr().out)
    main(["classify", "--config", str(config), "--json"])
    from_file = json.loads(capsys.readouterr().out)
    main(["classify", "--ckpt", str(ckpt), str(clip), "--top-k", "2", "--json"])
    assert json.loads(capsys.readouterr().out) == from_file and len(from_file["results"][0]["top"]) == 2
    exported = tmp_path / "export.yaml"
    exported.write_text(f"ckpt: [{ckpt}]\nformat: torchscript\nout: {tmp_path / 'model.pt'}\n")
    main(["export", "--config", str(exported)])
    assert torch.jit.load(str(tmp_path / "model.pt"))(torch.zeros(1, 40000)).shape == (1, 50)
