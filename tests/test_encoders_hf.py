"""Hugging Face encoders (``models.encoders.hf``): parity with transformers on tiny random models saved
as ``save_pretrained`` writes them, loading, the one-line errors, and AST through the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
kaldi = pytest.importorskip("torchaudio.compliance.kaldi")

from esc50_lightning.errors import ESC50Error  # noqa: E402
from esc50_lightning.features.kaldi import KaldiFbank  # noqa: E402
from esc50_lightning.models.encoders.hf import AST, HFAudio, resize_ast_positions  # noqa: E402

RATE = 16000
SAMPLES = 5 * RATE
TINY_AST = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=7)


def waves(n: int = 3, samples: int = SAMPLES, seed: int = 0) -> torch.Tensor:
    """Noise, a tone, and a clip silent for its first half (Kaldi's log floor)."""
    g = torch.Generator().manual_seed(seed)
    w = 0.1 * torch.randn(n, samples, generator=g)
    t = torch.arange(samples) / RATE
    if n > 1:
        w[1] = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    if n > 2:
        w[2, : samples // 2] = 0
    return w


def save_tiny_ast(folder, max_length: int = 512, seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = transformers.ASTForAudioClassification(
        transformers.ASTConfig(max_length=max_length, **{**TINY_AST, **config})).eval()
    model.save_pretrained(folder)
    transformers.ASTFeatureExtractor(max_length=max_length).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-ast")
    return folder, save_tiny_ast(folder)


def extractor_inputs(folder, w: torch.Tensor) -> torch.Tensor:
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    return extractor([x.numpy() for x in w], sampling_rate=RATE, return_tensors="pt")["input_values"]


def test_batched_kaldi_fbank_equals_torchaudio_clip_by_clip():
    w = waves(4)
    ours = KaldiFbank()(w)
    theirs = torch.stack([kaldi.fbank(x[None], sample_frequency=RATE, window_type="hanning", num_mel_bins=128)
                          for x in w])
    assert ours.shape == theirs.shape == (4, 498, 128)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    exported = KaldiFbank().export_friendly()(w)  # real-valued DFT for ONNX: same numbers within rounding
    torch.testing.assert_close(exported, theirs, rtol=1e-4, atol=2e-3)


def test_tiny_ast_parity_with_transformers(tiny_ast):
    folder, reference = tiny_ast
    net = HFAudio(1, SAMPLES, 50, weights=str(folder)).eval()
    w = waves()
    inputs = extractor_inputs(folder, w)
    with torch.no_grad():
        torch.testing.assert_close(net.frontend(w), inputs, rtol=0, atol=1e-5)
        theirs = reference(input_values=inputs).logits
        torch.testing.assert_close(net.pretrained_logits(w), theirs, rtol=1e-4, atol=1e-5)
        assert net(w).shape == (3, 50)  # the new head
    assert net.sample_rate == RATE and net.embedding_dim == 32
    assert net.pretrained_head.out_features == 7 and not any(p.requires_grad for p in net.pretrained_head.parameters())


def test_parameters_split_into_encoder_and_head(tiny_ast):
    net = HFAudio(1, SAMPLES, 50, weights=str(tiny_ast[0]))
    encoder, head = net.encoder_parameters(), net.head_parameters()
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in encoder} | {id(p) for p in head} == trainable
    assert not {id(p) for p in encoder} & {id(p) for p in head}
    probe = HFAudio(1, SAMPLES, 50, weights=str(tiny_ast[0]), freeze=True).train()
    assert not any(p.requires_grad for p in probe.encoder_parameters()) and not probe.model.training
    assert all(p.requires_grad for p in probe.head_parameters())


def test_checkpoint_init_args_rebuild_without_the_folder(tiny_ast, tmp_path):
    """What our checkpoints store: the configuration and the extractor's settings, no path."""
    net = AST(1, SAMPLES, 50, weights=str(tiny_ast[0])).eval()
    args = net.checkpoint_init_args()
    assert args["weights"] is None and "id2label" not in args["config"]
    json.dumps(args)  # plain values: they go in the checkpoint's hyper-parameters
    rebuilt = AST(1, SAMPLES, 50, **args)
    rebuilt.load_state_dict(net.state_dict())
    w = waves(2)
    torch.testing.assert_close(rebuilt.eval()(w), net(w))
    assert rebuilt.encoder_key() == net.encoder_key()


def test_ast_recipe_defaults_and_spec_augment(tiny_ast):
    net = AST(1, SAMPLES, 50, weights=str(tiny_ast[0]))
    front = net.frontend_module
    assert (front.max_length, front.mean, front.std) == (512, -6.6268077, 5.358466)
    w = waves(2)
    clean = net.eval().frontend(w)
    masked = net.train().frontend(w)
    changed = (masked != clean)
    assert changed.any()
    assert torch.allclose(masked[changed], torch.tensor(front.pad_value))  # a normalised zero, as AST masks


def test_max_length_crops_the_position_embeddings_around_their_middle(tmp_path):
    """AST's ESC-50 code: 101 time patches (1,024 frames) cut to 50 (512 frames) from the middle."""
    model = save_tiny_ast(tmp_path, max_length=1024)
    grid = model.base_model.embeddings.position_embeddings.data[:, 2:].reshape(1, 12, 101, -1)
    net = HFAudio(1, SAMPLES, 50, weights=str(tmp_path), max_length=512)
    pos = net.model.base_model.embeddings.position_embeddings.data
    assert pos.shape == (1, 2 + 12 * 50, 32)
    torch.testing.assert_close(pos[:, 2:].reshape(1, 12, 50, -1), grid[:, :, 25:75])
    torch.testing.assert_close(pos[:, :2], model.base_model.embeddings.position_embeddings.data[:, :2])
    assert net(waves(1)).shape == (1, 50)
    copy = transformers.ASTForAudioClassification(transformers.ASTConfig(max_length=512, **TINY_AST))
    resize_ast_positions(copy, 1024)  # longer than the checkpoint: interpolated, as the authors do
    longer = copy.base_model.embeddings.position_embeddings
    assert longer.shape == (1, 2 + 12 * 101, 32)


def test_wav2vec2_style_checkpoint(tmp_path):
    """Any AutoModelForAudioClassification: a tiny wav2vec 2.0 reads the normalised waveform."""
    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        classifier_proj_size=12, num_labels=5)
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    reference.save_pretrained(tmp_path)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    extractor.save_pretrained(tmp_path)
    net = HFAudio(1, SAMPLES, 50, weights=str(tmp_path)).eval()
    w = waves(2)
    inputs = extractor([x.numpy() for x in w], sampling_rate=RATE, return_tensors="pt")["input_values"]
    with torch.no_grad():
        torch.testing.assert_close(net.frontend(w), inputs, rtol=0, atol=1e-5)
        torch.testing.assert_close(net.pretrained_logits(w), reference(input_values=inputs).logits,
                                   rtol=1e-4, atol=1e-5)
    assert net.embedding_dim == 12 and net(w).shape == (2, 50)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_offline_hub_name_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ESC50Error) as err:
        AST(1, SAMPLES, 50)
    message = one_line(err)
    assert "MIT/ast-finetuned-audioset-10-10-0.4593" in message and "HF_HUB_OFFLINE" in message
    assert "hf download MIT/ast-finetuned-audioset-10-10-0.4593" in message
    assert "--model.net.init_args.weights" in message


@pytest.mark.parametrize("case", ["missing", "empty", "file", "no_extractor", "other_shapes", "truncated",
                                  "whisper_extractor"])
def test_wrong_folder_is_one_line(case, tmp_path, tiny_ast):
    folder = tmp_path / "model"
    if case == "missing":
        expected = "no such folder"
    elif case == "empty":
        folder.mkdir()
        expected = "no config.json"
    elif case == "file":
        folder.write_bytes(b"not a folder")
        expected = "a file, not a folder"
    elif case == "no_extractor":
        save_tiny_ast(folder)
        (folder / "preprocessor_config.json").unlink()
        expected = "no preprocessor_config.json"
    elif case == "other_shapes":  # the config of one model beside the weights of another
        save_tiny_ast(folder)
        other = tmp_path / "other"
        save_tiny_ast(other, hidden_size=16, intermediate_size=32)
        (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
        expected = ("mismatched shapes (audio_spectrogram_transformer.embeddings.cls_token (1, 1, 16) "
                    "(expected (1, 1, 32))")
    elif case == "truncated":
        save_tiny_ast(folder)
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
        expected = "do not load"
    else:
        save_tiny_ast(folder)
        transformers.WhisperFeatureExtractor().save_pretrained(folder)
        expected = "WhisperFeatureExtractor"
    with pytest.raises(ESC50Error) as err:
        HFAudio(1, SAMPLES, 50, weights=str(folder))
    message = one_line(err)
    assert expected in message, message


def test_spectrogram_input_is_refused_in_one_line(tiny_ast):
    with pytest.raises(ESC50Error, match="--data.feature waveform"):
        HFAudio(128, 157, 50, weights=str(tiny_ast[0]))


def test_export_traces_and_onnx_matches_eager(tiny_ast, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    net = HFAudio(1, SAMPLES, 50, weights=str(tiny_ast[0])).eval()
    w = waves(2)
    with torch.no_grad():
        eager = net(w)
        traced = torch.jit.trace(net, torch.zeros(2, SAMPLES))
        torch.testing.assert_close(traced(w), eager)
        # the front end swaps its FFT for real-valued products by itself
        torch.onnx.export(net, (torch.zeros(2, SAMPLES),), str(tmp_path / "m.onnx"), input_names=["waveform"],
                          output_names=["logits"], dynamic_axes={"waveform": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    out = session.run(None, {"waveform": w.numpy()})[0]
    np.testing.assert_allclose(out, eager.numpy(), rtol=1e-3, atol=1e-4)


def ast_args(root, cache, weights, epochs: int = 1) -> list[str]:
    """configs/ast.yaml on the synthetic tree, with a tiny AST folder as the weights."""
    from .conftest import FAST_DATA
    from .test_cli import CONFIGS

    data = {k: v for k, v in FAST_DATA.items() if k in ("allow_subset", "val_fraction", "batch_size")}
    return [f"--config={CONFIGS / 'ast.yaml'}", f"--data.root={root}", f"--data.cache_dir={cache}",
            *(f"--data.{k}={v}" for k, v in data.items()), f"--model.net.init_args.weights={weights}",
            f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.precision=32-true"]


def test_tiny_ast_through_fit_classify_and_export(tiny_root, tmp_path, monkeypatch, capsys):
    """configs/ast.yaml with a tiny AST: fit one epoch, then classify and export (ONNX Runtime and
    TorchScript equal to eager), alone and as a two-member ensemble, from our checkpoint alone: the model
    folder is gone by then. (A sweep and ``ensemble`` of a tiny encoder: tests/test_encoders_cli.py.)"""
    from esc50_lightning.cli import main
    from esc50_lightning.training.checkpoints import load_checkpoint, load_ensemble

    onnxruntime = pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "tiny-ast"
    save_tiny_ast(folder)
    main(["fit", *ast_args(tiny_root, tmp_path / "cache", folder)])
    (ckpt,) = tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    saved = torch.load(ckpt, weights_only=False)["hyper_parameters"]["net"]["init_args"]
    assert saved["weights"] is None and saved["config"]["hidden_size"] == 32  # no path: the checkpoint is enough
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    model = load_checkpoint(ckpt)
    assert model.sample_rate == RATE and model.clip_samples == SAMPLES
    clip = sorted((tiny_root / "audio").glob("*.wav"))[0]
    capsys.readouterr()
    main(["classify", "--ckpt", str(ckpt), str(ckpt), str(clip), "--json", "--top-k", "2"])
    assert len(json.loads(capsys.readouterr().out)["results"][0]["top"]) == 2
    w = waves(2)
    with torch.no_grad():
        eager = model.module(w)
        pair = load_ensemble([ckpt, ckpt]).module(w)
    main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "ast.pt")])
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "ast.pt"))(w), eager)
    main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "ast.onnx")])
    session = onnxruntime.InferenceSession(str(tmp_path / "ast.onnx"))
    np.testing.assert_allclose(session.run(None, {"waveform": w.numpy()})[0], eager.numpy(), rtol=1e-3, atol=1e-4)
    main(["export", "--ckpt", str(ckpt), str(ckpt), "--format", "onnx", "--out", str(tmp_path / "pair.onnx")])
    session = onnxruntime.InferenceSession(str(tmp_path / "pair.onnx"))
    np.testing.assert_allclose(session.run(None, {"waveform": w.numpy()})[0], pair.numpy(), rtol=1e-3, atol=1e-4)
