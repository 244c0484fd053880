"""Cross-validation over the official ESC-50 folds with scikit-learn's own tools."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import f1_score, make_scorer, precision_score, recall_score
from sklearn.model_selection import PredefinedSplit, cross_validate

# Macro averages over classes; a class never predicted counts as precision 0 (no warning).
SCORING = {
    "accuracy": "accuracy",
    "precision": make_scorer(precision_score, average="macro", zero_division=0),
    "recall": make_scorer(recall_score, average="macro", zero_division=0),
    "f1": make_scorer(f1_score, average="macro", zero_division=0),
}


def official_folds_cv(
    estimator: BaseEstimator, x: np.ndarray, y: np.ndarray, folds: np.ndarray, n_jobs: int = 1
) -> list[dict]:
    """Train on four official folds, test on the fifth, five times; one dict per test fold.

    ``PredefinedSplit`` makes the splits, so every fit (the scaler included) sees only the
    training folds. Estimators that search hyper-parameters receive the fold numbers as
    ``groups`` for their inner, fold-wise splits.
    """
    needs_groups = hasattr(estimator, "param_grid")
    result = cross_validate(
        estimator, x, y, cv=PredefinedSplit(folds), scoring=SCORING, n_jobs=None if needs_groups else n_jobs,
        params={"groups": folds} if needs_groups else None, error_score="raise",
    )
    order = np.unique(folds)
    return [
        {"fold": int(order[i]), **{m: float(result[f"test_{m}"][i]) for m in SCORING},
         "train_seconds": round(float(result["fit_time"][i]), 3)}
        for i in range(len(order))
    ]
