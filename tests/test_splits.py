"""The validation split takes the fraction asked, and the default 0.1 the clips it always took."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from esc50_lightning.data.splits import validation_folds, validation_split
from esc50_lightning.errors import ESC50Error


def esc50_like_training_folds(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, groups)`` shaped like four ESC-50 folds: 50 classes x 32 clips, cut from
    recordings of one to four clips each (``src_file``)."""
    rng = np.random.default_rng(seed)
    targets, groups, group = [], [], 0
    for target in range(50):
        left = 32
        while left:
            size = min(left, int(rng.choice([1, 1, 1, 1, 2, 3, 4])))
            targets += [target] * size
            groups += [group] * size
            group, left = group + 1, left - size
    return np.array(targets), np.array(groups)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_default_tenth_is_the_split_every_earlier_run_used(seed):
    targets, groups = esc50_like_training_folds(seed)
    fit, val = validation_split(targets, groups, 0.1, seed)
    fit_before, val_before = next(StratifiedGroupKFold(10, shuffle=True, random_state=seed).split(
        np.arange(len(targets)), targets, groups))
    assert np.array_equal(val, val_before) and np.array_equal(fit, fit_before)


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.45])
def test_validation_takes_the_fraction_asked_by_class_and_by_recording(fraction):
    targets, groups = esc50_like_training_folds()
    fit, val = validation_split(targets, groups, fraction, seed=0)
    assert len(val) / len(targets) == pytest.approx(fraction, abs=0.005)  # 0.4 took 0.5, 0.15 took 0.143
    assert not set(groups[fit]) & set(groups[val]) and len(fit) + len(val) == len(targets)
    per_class = np.bincount(targets[val], minlength=50)  # stratified as finely as k folds of 4-clip recordings allow
    assert per_class.min() >= 1 and per_class.max() <= 32 * fraction + 8


def test_fractions_it_cannot_split_to_are_one_line_naming_the_flag():
    assert validation_folds(0.4) == (2, 5) and validation_folds(0.333) == (1, 3)
    for bad in (0.123, 0.0, 0.5, 0.7):
        with pytest.raises(ESC50Error, match=r"^--data\.val_fraction") as err:
            validation_folds(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ESC50Error, match="m/k.*the nearest is 0.125"):
        validation_folds(0.123)


def test_the_datamodule_splits_its_training_folds_the_same_way(tiny_root, tmp_path):
    from esc50_lightning.data import ESC50DataModule

    from .conftest import FAST_DATA

    # the tiny tree has 8 training clips a class: 1/4 (as the tests use) rather than 1/10
    dm = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), seed=3, **{**FAST_DATA, "val_fraction": 0.25})
    index = dm.split()
    train = np.flatnonzero(dm.meta["fold"].to_numpy() != 1)
    meta = dm.meta.iloc[train]
    _, val_pos = next(StratifiedGroupKFold(4, shuffle=True, random_state=3).split(
        train, meta["target"].to_numpy(), meta["src_file"].to_numpy()))
    assert np.array_equal(index["val"], train[val_pos])
    with pytest.raises(ESC50Error, match="--data.val_fraction"):
        ESC50DataModule(root=str(tiny_root), val_fraction=0.123)
