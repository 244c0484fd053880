"""classify and export, on a model trained for a few steps on the synthetic tree."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from esc50_lightning.cli import main
from esc50_lightning.commands.classify import windows
from esc50_lightning.models.waveform import ConvPowerSpectrogram, load_checkpoint

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
