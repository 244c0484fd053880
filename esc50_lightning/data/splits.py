"""The validation split carved out of the training folds: stratified by class, grouped by recording.

``val_fraction = m / k`` cuts the training clips into ``k`` folds with scikit-learn's
``StratifiedGroupKFold`` (clips of one ``src_file`` stay in one fold, each class spread evenly) and
validates on the first ``m`` of them. For ``1 / k`` (the default 0.1) that is the first fold, the
split every earlier run used; ``0.4`` is two folds of five, where ``round(1 / 0.4)`` folds
validated on half. Fractions are read to a twentieth (``k <= 20``): each class has 32 training
clips in ESC-50, and finer folds would hold less than two clips of a class each.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from esc50_lightning.errors import ESC50Error

if TYPE_CHECKING:
    import pandas as pd

MAX_FOLDS = 20
TOLERANCE = 1e-3  # 0.333 reads as 1/3


def validation_folds(fraction: float, flag: str = "--data.val_fraction") -> tuple[int, int]:
    """``(m, k)`` with ``m / k == fraction``, ``k <= 20``; an ``ESC50Error`` naming ``flag`` when
    the fraction is outside (0, 0.5) or not such a ratio."""
    if not 0 < fraction < 0.5:
        raise ESC50Error(f"{flag} must be in (0, 0.5), got {fraction}")
    ratio = Fraction(fraction).limit_denominator(MAX_FOLDS)
    if abs(float(ratio) - fraction) > TOLERANCE:
        raise ESC50Error(
            f"{flag} {fraction}: validation takes m of k stratified, grouped folds (k <= {MAX_FOLDS}), so the "
            f"fraction must be m/k, e.g. 0.1, 0.125, 0.15, 0.2, 0.25, 0.3 or 1/3; the nearest is {float(ratio):g}")
    return ratio.numerator, ratio.denominator


def validation_split(targets: np.ndarray, groups: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, val)`` positions into ``targets``: ``fraction`` of the clips for validation,
    stratified by target, with each group (recording) on one side."""
    m, k = validation_folds(fraction)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [val for _, val in splitter.split(np.zeros(len(targets)), targets, groups)]
    val = np.sort(np.concatenate(folds[:m]))
    return np.setdiff1d(np.arange(len(targets)), val), val


def fold_split(meta: pd.DataFrame, fold: int | str, val_strategy: str = "grouped", val_fraction: float = 0.1,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Positions in ``meta`` of ``train``, ``val`` (maybe empty) and ``test`` for test fold ``fold``
    (``all``: no test clips): what the DataModule trains on and what ensembles score."""
    folds = meta["fold"].to_numpy()
    held_out = folds == fold if fold != "all" else np.zeros(len(folds), dtype=bool)
    test, train = np.flatnonzero(held_out), np.flatnonzero(~held_out)
    val = np.array([], dtype=int)
    if val_strategy == "grouped":
        fit_pos, val_pos = validation_split(meta["target"].to_numpy()[train], meta["src_file"].to_numpy()[train],
                                            val_fraction, seed)
        train, val = train[fit_pos], train[val_pos]
    assert not set(train) & set(test) and not set(val) & set(test) and not set(train) & set(val)
    return {"train": train, "val": val, "test": test}
