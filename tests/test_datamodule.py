import numpy as np
import pytest
import torch

from esc50_lightning.data import Augmentation, ESC50DataModule
from esc50_lightning.errors import ESC50Error

from .conftest import FAST_DATA


@pytest.fixture
def dm(tiny_root, tmp_path):
    return ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), **FAST_DATA)


def test_folds_are_disjoint_and_val_grouped(dm):
    for fold in range(1, 6):
        dm.fold = fold
        dm.setup("fit")
        idx = dm.index
        meta = dm.meta
        assert set(meta["fold"].to_numpy()[idx["test"]]) == {fold}
        assert fold not in set(meta["fold"].to_numpy()[idx["train"]])
        assert not set(idx["train"]) & set(idx["val"])
        assert len(idx["train"]) + len(idx["val"]) + len(idx["test"]) == len(meta)
        src = meta["src_file"].to_numpy()
        assert not set(src[idx["train"]]) & set(src[idx["val"]])


def test_recordings_stay_together(tree, tmp_path):
    """Clips cut from one recording (same src_file) never straddle train and validation."""
    import pandas as pd

    path = tree / "meta" / "esc50.csv"
    meta = pd.read_csv(path)
    meta["src_file"] = meta.index // 2  # pairs of clips share a recording
    meta.to_csv(path, index=False)
    dm = ESC50DataModule(root=str(tree), cache_dir=str(tmp_path), clip_seconds=1.0, **FAST_DATA)
    dm.setup("fit")
    src = dm.meta["src_file"].to_numpy()
    assert not set(src[dm.index["train"]]) & set(src[dm.index["val"]])


def test_batches_are_slices_with_expected_shape(dm):
    dm.setup("fit")
    assert dm.feature_shape == (32, 1 + 40000 // 128)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, *dm.feature_shape) and y.shape == (8,)
    n = sum(len(b[1]) for b in dm.test_dataloader())
    assert n == len(dm.index["test"])


def test_normalisation_statistics_come_from_training_clips(dm):
    dm.setup("fit")
    train = dm.inputs[dm.index["train"]]
    expected = train.double().mean(dim=(0, 2)).float()
    torch.testing.assert_close(dm.pipeline.normalizer.mean[:, 0], expected, atol=1e-4, rtol=0)
    everything = dm.inputs.double().mean(dim=(0, 2)).float()
    assert not torch.allclose(dm.pipeline.normalizer.mean[:, 0], everything, atol=1e-4)


def test_feature_cache_reused_across_folds(dm, tmp_path, monkeypatch):
    dm.setup("fit")
    import esc50_lightning.data.datamodule as module

    monkeypatch.setattr(module, "compute_features", lambda *a, **k: pytest.fail("recomputed"))
    other = ESC50DataModule(root=dm.root, fold=3, cache_dir=str(tmp_path), **FAST_DATA)
    other.setup("fit")
    assert torch.equal(other.inputs, dm.inputs)


def test_waveform_path_matches_precomputed(tiny_root, tmp_path):
    pre = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), val_strategy="none", **FAST_DATA)
    raw = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), val_strategy="none",
                          precompute=False, **FAST_DATA)
    pre.setup("fit")
    raw.setup("fit")
    xb, _ = next(iter(raw.test_dataloader()))
    xp, _ = next(iter(pre.test_dataloader()))
    torch.testing.assert_close(raw.on_after_batch_transfer((xb, None), 0)[0],
                               pre.on_after_batch_transfer((xp, None), 0)[0], atol=1e-3, rtol=1e-4)


def test_pooled_features(dm):
    x, y, folds, groups = dm.pooled_features("meanstd")
    assert x.shape == (40, 64) and np.isfinite(x).all()
    assert set(folds) == {1, 2, 3, 4, 5} and len(groups) == 40


def test_options_are_validated(tiny_root):
    with pytest.raises(ESC50Error, match="fold must be 1-5"):
        ESC50DataModule(root=str(tiny_root), fold=6)
    with pytest.raises(ESC50Error, match="val_fraction"):
        ESC50DataModule(root=str(tiny_root), val_fraction=0.9)
    assert ESC50DataModule(augment=Augmentation(gain_db=3)).gain.max_db == 3


def test_frontend_settings_are_the_datamodules_arguments(tiny_root, tmp_path):
    """One list of input settings: the dataclass's fields, each a DataModule argument, and the
    DataModule's pipeline is built from exactly them."""
    import inspect

    from esc50_lightning.features import FrontendSettings

    arguments = inspect.signature(ESC50DataModule).parameters
    assert set(FrontendSettings.names()) <= set(arguments)
    dm = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), **FAST_DATA)
    assert dm.settings == FrontendSettings.from_mapping(dm.hparams)
    assert dm.pipeline.settings is dm.settings and dm.feature_shape == dm.settings.shape
