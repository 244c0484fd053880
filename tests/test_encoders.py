"""Pretrained encoders (PANNs): parity with the published definition, loading published-format files,
fetching weights, the waveform input, and the ways to train (probe, fine-tuning groups, freezing)."""

from __future__ import annotations

import copy
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from esc50_lightning.data import Augmentation, ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.fetch import fetch, fetch_weights
from esc50_lightning.models import AudioClassifier
from esc50_lightning.models.encoders import PANNS_MODELS, PANNs, is_encoder
from esc50_lightning.models.encoders import panns as panns_module

from .reference.panns_reference import REFERENCES, randomise
from .test_download import RangeHandler

SECONDS = 0.35  # 36 frames at hop 320 (32 kHz) or 160 (16 kHz): enough for Cnn14's five 2x2 pools


def published_file(model: str, path: Path, seed: int = 0) -> Path:
    """The reference network with random weights, saved as the published checkpoints are."""
    return save_published(randomise(REFERENCES[model](), seed), path)


def save_published(reference: torch.nn.Module, path: Path) -> Path:
    torch.save({"model": reference.state_dict(), "iteration": 0}, path)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("model", list(PANNS_MODELS))
def test_parity_with_the_published_definition(model, tmp_path):
    reference = randomise(REFERENCES[model]())
    path = save_published(reference, tmp_path / PANNS_MODELS[model].file)
    net = PANNs(1, 100, 50, model=model, weights=str(path))
    net.load_pretrained()  # strict: a missing or unexpected key would have raised
    assert set(net.audioset.state_dict()) == set(reference.state_dict())
    wave = torch.randn(2, int(net.sample_rate * SECONDS), generator=torch.Generator().manual_seed(1)) * 0.1
    reference.eval(), net.eval()
    with torch.no_grad():
        expected = reference(wave)
        embedding, clipwise = net.embed(wave), net.clipwise(wave)
    assert embedding.shape == (2, net.embedding_dim) == (2, 2048 if model.startswith("Cnn14") else 512)
    torch.testing.assert_close(embedding, expected["embedding"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(clipwise, expected["clipwise_output"], atol=1e-4, rtol=1e-5)
    assert net(wave[:, None]).shape == (2, 50)  # (batch, 1, samples), as the DataModule hands it


def test_our_front_end_equals_the_publishers_without_any_file():
    """Random init (no weights file): the STFT kernels and mel filters we compute are torchlibrosa's."""
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    for spec in (PANNS_MODELS["Cnn14"], PANNS_MODELS["Cnn14_16k"]):
        ours = panns_module._Spectrogram(spec.window, spec.hop).state_dict()
        theirs = Spectrogram(n_fft=spec.window, hop_length=spec.hop, win_length=spec.window).state_dict()
        mel = panns_module._LogmelFilterBank(spec.sample_rate, spec.window, 64, spec.fmin, spec.fmax)
        ours.update(mel.state_dict())
        theirs.update(LogmelFilterBank(sr=spec.sample_rate, n_fft=spec.window, n_mels=64, fmin=spec.fmin,
                                       fmax=spec.fmax).state_dict())
        assert set(ours) == set(theirs) == {"stft.conv_real.weight", "stft.conv_imag.weight", "melW"}
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def cnn6_file(tmp_path_factory):
    return published_file("Cnn6", tmp_path_factory.mktemp("weights") / "Cnn6_mAP=0.343.pth")


def test_another_models_file_is_one_line_naming_keys_and_shapes(cnn6_file):
    net = PANNs(1, 100, 50, model="Cnn10", weights=str(cnn6_file))
    with pytest.raises(ESC50Error) as err:
        net.load_pretrained()
    text = one_line(err)
    assert "not a PANNs Cnn10 checkpoint (Cnn10_mAP=0.380.pth)" in text
    assert "missing keys (conv_block1.conv2.weight" in text and "mismatched shapes (conv_block1.conv1.weight" in text


def test_wrong_shapes_alone_are_named(cnn6_file, tmp_path):
    """As a Cnn14_16k file read as Cnn14 (a 512-point STFT for a 1024-point one); here a Cnn6 file whose
    STFT kernels are of the 16 kHz models."""
    state = torch.load(cnn6_file)["model"]
    for key in ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight"):
        state[key] = torch.zeros(257, 1, 512)
    torch.save({"model": state}, tmp_path / "16k.pth")
    with pytest.raises(ESC50Error) as err:
        PANNs(1, 100, 50, model="Cnn6").load_published(tmp_path / "16k.pth")
    text = one_line(err)
    assert "missing" not in text and "unexpected" not in text
    assert "2 mismatched shapes (spectrogram_extractor.stft.conv_real.weight (257, 1, 512) (expected (513, 1, 1024))" \
        in text


def test_truncated_unknown_and_missing_files_are_one_line(cnn6_file, tmp_path):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(cnn6_file.read_bytes()[: cnn6_file.stat().st_size // 2])
    net = PANNs(1, 100, 50, model="Cnn6")
    with pytest.raises(ESC50Error, match="cut.pth: not a readable torch checkpoint") as err:
        net.load_published(truncated)
    assert "fetch it again" in one_line(err)
    other = tmp_path / "other.pth"
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, other)
    with pytest.raises(ESC50Error, match="1 unexpected keys") as err:
        net.load_published(other)
    assert "31 missing keys" in one_line(err)  # BatchNorm counters are not asked for
    torch.save({"model": torch.load(cnn6_file)["model"], "sampler": np.arange(3)}, other)  # pickled objects too
    with pytest.raises(ESC50Error, match="holds pickled objects besides tensors and is not the published file") as err:
        net.load_published(other)
    one_line(err)
    torch.save([1, 2], other)
    with pytest.raises(ESC50Error, match="no state dict inside") as err:
        net.load_published(other)
    one_line(err)
    with pytest.raises(ESC50Error, match="weights file not found") as err:
        PANNs(1, 100, 50, model="Cnn6", weights=str(tmp_path / "nothing.pth")).load_pretrained()
    assert "`audioset` to fetch" in one_line(err)
    with pytest.raises(ESC50Error, match="no Cnn6_mAP=0.343.pth in this folder") as err:
        PANNs(1, 100, 50, model="Cnn6", weights=str(tmp_path)).load_pretrained()


def test_a_folder_holding_the_published_file_is_read(cnn6_file):
    net = PANNs(1, 100, 50, model="Cnn6", weights=str(cnn6_file.parent))
    net.load_pretrained()
    torch.testing.assert_close(net.audioset.fc1.weight, torch.load(cnn6_file)["model"]["fc1.weight"])
    assert net.pretrained_loaded


# ----- fetching weights -----
@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_fetch_checks_the_md5_resumes_and_keeps_nothing_wrong(server, tmp_path, monkeypatch, cnn6_file):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    RangeHandler.payload = cnn6_file.read_bytes()
    md5 = hashlib.md5(RangeHandler.payload).hexdigest()
    dest = tmp_path / "cache" / "esc50-lightning" / "weights" / "Cnn6_mAP=0.343.pth"
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(RangeHandler.payload[:1000])  # a download broken off
    got = fetch_weights(f"{server}/Cnn6.pth", dest.name, f"md5:{md5}", what="Cnn6")
    assert got == dest and dest.read_bytes() == RangeHandler.payload
    assert not dest.with_name(dest.name + ".part").exists()
    with pytest.raises(ESC50Error, match="does not match the published checksum") as err:
        fetch(f"{server}/x.pth", tmp_path / "bad.pth", "md5:" + "0" * 32, by_hand="--flag")
    one_line(err)
    assert not (tmp_path / "bad.pth").exists()


def test_weights_by_name_are_fetched_into_the_cache(server, tmp_path, monkeypatch, cnn6_file):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(panns_module, "ZENODO", server + "/{}")
    RangeHandler.payload = cnn6_file.read_bytes()
    spec = PANNS_MODELS["Cnn6"]
    monkeypatch.setitem(PANNS_MODELS, "Cnn6", type(spec)(**{**spec.__dict__,
                                                             "md5": hashlib.md5(RangeHandler.payload).hexdigest()}))
    net = PANNs(1, 100, 50, model="Cnn6", weights="audioset")
    net.load_pretrained()
    assert (tmp_path / "cache" / "esc50-lightning" / "weights" / "Cnn6_mAP=0.343.pth").is_file()
    torch.testing.assert_close(net.audioset.fc1.bias, torch.load(cnn6_file)["model"]["fc1.bias"])


def test_offline_fetch_is_one_line_naming_the_url_and_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(panns_module, "ZENODO", "http://127.0.0.1:9/{}")
    with pytest.raises(ESC50Error) as err:
        PANNs(1, 100, 50, model="Cnn14", weights="audioset").load_pretrained()
    text = one_line(err)
    assert text.startswith("cannot download http://127.0.0.1:9/Cnn14_mAP%3D0.431.pth")
    assert "--model.net.init_args.weights PATH" in text


# ----- the waveform input -----
def test_waveform_input_is_the_clip_with_linear_gain(tiny_root, tmp_path):
    dm = ESC50DataModule(root=str(tiny_root), feature="waveform", sample_rate=16000, clip_seconds=1.0,
                         cache_dir=str(tmp_path), allow_subset=True, val_fraction=0.25,
                         augment=Augmentation(gain_db=6.0, time_shift=0.5))
    assert dm.feature_shape == (1, 16000)
    dm.setup("fit")
    x = dm.inputs[:4]
    assert x.shape == (4, 1, 16000)
    torch.testing.assert_close(dm.model_inputs(x), x)  # identity front end and normaliser
    ratio = dm.model_inputs(x, augment=True).abs().amax(-1) / x.abs().amax(-1)  # a gain and a circular shift
    assert ((ratio > 0.49) & (ratio < 2.01)).all() and not torch.allclose(ratio, torch.ones_like(ratio))
    assert dm.pipeline.checkpoint_state()["normalizer"] == {}


def test_spectrogram_augmentation_of_waveforms_is_one_line(tiny_root):
    with pytest.raises(ESC50Error) as err:
        ESC50DataModule(root=str(tiny_root), feature="waveform", augment=Augmentation(freq_masks=2, time_stretch=0.1))
    assert one_line(err).startswith("data.augment.freq_masks, data.augment.time_stretch act on spectrograms")


def test_an_encoder_refuses_spectrograms_and_another_rate(tiny_root, tmp_path):
    with pytest.raises(ESC50Error, match="set --data.feature waveform"):
        PANNs(64, 100, 50, model="Cnn6")
    import lightning as L

    model = AudioClassifier(partial(PANNs, model="Cnn6", width=0.0625), input_shape=(1, 16000), num_classes=4)
    dm = ESC50DataModule(root=str(tiny_root), feature="waveform", sample_rate=16000, clip_seconds=1.0,
                         cache_dir=str(tmp_path), allow_subset=True, val_fraction=0.25)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ESC50Error, match="pretrained at 32000 Hz: set --data.sample_rate 32000"):
        trainer.fit(model, datamodule=dm)


# ----- ways to train -----
def tiny(**kwargs) -> PANNs:
    return PANNs(1, 16000, 4, model="Cnn14_16k", width=0.03125, **kwargs)


def test_a_frozen_encoder_keeps_its_weights_and_batchnorm_statistics_while_the_head_learns():
    torch.manual_seed(0)
    net = tiny(freeze=True)
    encoder_before = copy.deepcopy(net.audioset.state_dict())
    head_before = copy.deepcopy(net.head.state_dict())
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in net.head.parameters()}
    net.train()
    assert not net.audioset.training and net.head.training  # the encoder stays in eval mode
    wave, target = torch.randn(4, 16000) * 0.1, torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(wave), target).backward()
        optimizer.step()
    for key, value in net.audioset.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], atol=0, rtol=0, msg=key)  # BN running stats too
    assert not torch.equal(net.head.weight, head_before["weight"])


def test_fine_tuning_has_two_parameter_groups_at_the_asked_rates():
    model = AudioClassifier(partial(PANNs, model="Cnn14_16k", width=0.03125), input_shape=(1, 16000), num_classes=4,
                            optimizer=partial(torch.optim.AdamW, lr=1e-3), lr_schedule="constant",
                            encoder_lr_scale=0.1)
    groups = model.configure_optimizers()["optimizer"].param_groups
    assert [g["name"] for g in groups] == ["head", "encoder"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    net = model.net
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.head.parameters()}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    fixed = [net.audioset.spectrogram_extractor.stft.conv_real.weight, net.audioset.logmel_extractor.melW,
             net.audioset.fc_audioset.weight]
    assert not any(p.requires_grad for p in fixed)  # the publisher's fixed front end; the AudioSet head unused


def test_encoder_settings_on_a_plain_net_are_one_line():
    from esc50_lightning.models import CNN

    with pytest.raises(ESC50Error, match="apply to pretrained encoders"):
        AudioClassifier(CNN, input_shape=(32, 20), encoder_lr_scale=0.1)


def test_freezing_for_the_first_epochs_then_fine_tuning(tiny_root, tmp_path):
    import lightning as L

    class Record(L.Callback):
        seen: list = []

        def on_train_epoch_end(self, trainer, module):
            self.seen.append((module.net.encoder_frozen, module.net.audioset.training,
                              module.net.audioset.conv_block1.conv1.weight.requires_grad))

    model = AudioClassifier(partial(PANNs, model="Cnn14_16k", width=0.03125), input_shape=(1, 16000), num_classes=4,
                            freeze_encoder_epochs=1, mixup_alpha=0.4)
    dm = ESC50DataModule(root=str(tiny_root), feature="waveform", sample_rate=16000, clip_seconds=1.0,
                         cache_dir=str(tmp_path), allow_subset=True, val_fraction=0.25, batch_size=8)
    record = Record()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_train_batches=2, callbacks=[record])
    trainer.fit(model, datamodule=dm)
    assert record.seen == [(True, False, False), (False, True, True)]


def test_the_probe_trains_on_cached_embeddings_computed_once(tiny_root, tmp_path):
    import lightning as L

    def fit() -> AudioClassifier:
        model = AudioClassifier(partial(PANNs, model="Cnn14_16k", width=0.03125, freeze=True),
                                input_shape=(1, 16000), num_classes=4, lr_schedule="constant")
        dm = ESC50DataModule(root=str(tiny_root), feature="waveform", sample_rate=16000, clip_seconds=1.0,
                             cache_dir=str(tmp_path), allow_subset=True, val_fraction=0.25, batch_size=8)
        before = copy.deepcopy(model.net.audioset.state_dict())
        L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, datamodule=dm)
        assert dm.serving_embeddings and dm.inputs.shape == (40, model.net.embedding_dim)
        for key, value in model.net.audioset.state_dict().items():
            assert torch.equal(value, before[key]), key
        return model

    torch.manual_seed(0)
    fit()
    cached = list(tmp_path.glob("embeddings-PANNs-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    torch.manual_seed(0)  # the same random encoder: the same key, read back
    model = fit()
    assert cached[0].stat().st_mtime_ns == stamp
    assert is_encoder(model.net) and model.net.embedding_input
