"""EMA of the weights through Lightning's weight averaging, from a config or the command line."""

import warnings

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from esc50_lightning.cli import main

from .test_cli import fast_args

EMA = ["--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging", "--trainer.callbacks.decay=0.5"]
WARMUP_EMA = ["--trainer.callbacks+=esc50_lightning.training.ema.WarmupEMA", "--trainer.callbacks.decay=0.5"]


def test_warmup_ema_follows_its_recursion() -> None:
    from esc50_lightning.training.ema import WarmupEMA, warmup_decay

    assert [warmup_decay(0.9, n) for n in (0, 1, 8, 80)] == [0.1, 2 / 11, 0.5, 0.9]
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    averaged = AveragedModel(net, multi_avg_fn=WarmupEMA(decay=0.9).average, use_buffers=True)
    expected = 0.0
    for step in range(30):
        with torch.no_grad():
            net[0].weight.fill_(float(step))
        net(torch.randn(4, 2))  # training mode: BatchNorm counts a batch
        averaged.update_parameters(net)
        if step:  # the first update copies
            decay = warmup_decay(0.9, step)
            expected = decay * expected + (1 - decay) * step
    torch.testing.assert_close(averaged.module[0].weight, torch.full((2, 2), expected))
    assert 0 < int(averaged.module[1].num_batches_tracked) <= 30  # integer buffers take the other path


@pytest.mark.parametrize("callback", [EMA, WARMUP_EMA], ids=["lightning_ema", "warmup_ema"])
def test_ema_run_saves_averaged_and_raw_weights(tiny_root, tmp_path, monkeypatch, callback):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *fast_args(tiny_root, tmp_path / "cache", "cnn.yaml", epochs=2), *callback])
    assert not [w for w in caught if "WeightAveraging" in str(w.message)]  # no warning about sharding
    ckpt = torch.load(next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")), weights_only=False)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if k.endswith("weight"))


def test_sweep_records_the_ema_and_its_checkpoint_loads_averaged_weights(tiny_root, tmp_path, monkeypatch):
    import json

    from esc50_lightning.models import AudioClassifier

    monkeypatch.chdir(tmp_path)
    main(["sweep", *fast_args(tiny_root, tmp_path / "cache", "cnn.yaml", epochs=2), *EMA, "--folds=1",
          f"--sweep_dir={tmp_path / 'sweep'}"])
    fold = tmp_path / "sweep" / "fold1"
    assert json.loads((fold / "result.json").read_text())["config"]["trainer"]["callbacks"][0]["init_args"][
        "decay"] == 0.5
    model = AudioClassifier.load_from_checkpoint(fold / "checkpoints" / "last.ckpt")
    ckpt = torch.load(fold / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in model.state_dict().items():  # a checkpoint loads as its averaged weights
        torch.testing.assert_close(value, ckpt["state_dict"][key])


# How training ends (3 training batches an epoch on the tiny tree), and the epoch last.ckpt records.
ENDINGS = {
    "max_epochs": ([], 1),
    "max_steps": (["--trainer.max_epochs=10", "--trainer.max_steps=4"], 1),  # one batch into the second epoch
    "early_stopping": (["--trainer.max_epochs=10", "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                        "--trainer.callbacks.monitor=val/loss", "--trainer.callbacks.stopping_threshold=1e9"], 0),
}


@pytest.mark.parametrize("recalibrate, ending", [(True, "max_epochs"), (False, "max_epochs"), (True, "max_steps"),
                                                 (True, "early_stopping")])
def test_warmup_ema_saves_batchnorm_statistics_measured_for_the_averaged_weights(tiny_root, tmp_path, monkeypatch,
                                                                                  recalibrate, ending):
    from esc50_lightning.data import ESC50DataModule
    from esc50_lightning.models import AudioClassifier
    from esc50_lightning.training.ema import recalibrate_batchnorm

    monkeypatch.chdir(tmp_path)
    ends, last_epoch = ENDINGS[ending]
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", "cnn.yaml", epochs=2), *WARMUP_EMA,
          f"--trainer.callbacks.recalibrate_bn={str(recalibrate).lower()}", *ends])
    path = next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt"))
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["epoch"] == last_epoch  # a rewritten checkpoint keeps Lightning's loop state
    saved = checkpoint["state_dict"]
    model = AudioClassifier.load_from_checkpoint(path)
    dm = ESC50DataModule.load_from_checkpoint(path)
    dm.setup("fit")
    # re-estimation forgets the old statistics: on recalibrated weights it changes nothing
    recalibrate_batchnorm(model, dm.clean_batches("train", model.device))
    stats = [k for k in saved if k.endswith(("running_mean", "running_var"))]
    assert stats
    # (NHWC in training, NCHW here: equal up to rounding)
    same = [torch.allclose(model.state_dict()[k], saved[k], rtol=1e-3, atol=1e-4) for k in stats]
    assert all(same) if recalibrate else not all(same)


def test_a_fold_resumed_after_training_is_tested_with_the_averaged_weights(tiny_root, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    args = ["sweep", *fast_args(tiny_root, tmp_path / "cache", "cnn.yaml", epochs=2), *WARMUP_EMA, "--folds=1",
            f"--sweep_dir={tmp_path / 'sweep'}"]
    main(args)
    result = tmp_path / "sweep" / "fold1" / "result.json"
    first = json.loads(result.read_text())
    result.unlink()  # interrupted after training, before testing: the resumed fold trains nothing
    main(args)
    again = json.loads(result.read_text())
    assert again["resumed"] and again["epochs"] == 2
    assert (again["confusion_matrix"], again["f1"]) == (first["confusion_matrix"], first["f1"])


def test_warmup_ema_trained_from_bare_dataloaders_warns_and_keeps_the_averaged_statistics(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from esc50_lightning.models import CNN, AudioClassifier
    from esc50_lightning.training.ema import WarmupEMA

    model = AudioClassifier(net=lambda b, f, c: CNN(b, f, c, channels=(4,)), input_shape=(8, 8), num_classes=2)
    data = DataLoader(TensorDataset(torch.randn(8, 8, 8), torch.arange(8) % 2), batch_size=4)
    trainer = L.Trainer(max_epochs=1, callbacks=[WarmupEMA(decay=0.5)], default_root_dir=tmp_path, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="recalibrate_bn needs the ESC50DataModule"):
        trainer.fit(model, data)
