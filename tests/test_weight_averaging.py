"""EMA of the weights through Lightning's own callback, from a config or the command line."""

import warnings

import torch

from esc50_lightning.cli import main

from .test_cli import fast_args

EMA = ["--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging", "--trainer.callbacks.decay=0.5"]


def test_ema_run_saves_averaged_and_raw_weights(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *fast_args(tiny_root, tmp_path / "cache", "cnn.yaml", epochs=2), *EMA])
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
