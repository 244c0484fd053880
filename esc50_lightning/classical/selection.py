"""Choosing a classical grid row without looking at a test fold.

The grid scores every row on every test fold; the best of those scores is an optimistic upper bound,
since the row was chosen on the very folds it is scored on. The headline is chosen instead on
validation, as the networks' recipes are: for test fold ``k`` every row is fitted on the training
folds less their grouped validation split (``data.splits.fold_split``, the split ``fit`` carves, same
``val_fraction`` and ``seed``) and scored on that split; the row with the best validation accuracy
(the first in grid order on a tie) is fold ``k``'s choice, and its test score is the grid's own for
that fold (fitted on all four training folds, as every grid row is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score

from esc50_lightning.data.splits import fold_split
from esc50_lightning.results import summarize_run

SELECTED = "selected on validation"


def validation_score(estimator: BaseEstimator, x: np.ndarray, y: np.ndarray, meta: pd.DataFrame, fold: int,
                     val_fraction: float, seed: int) -> dict:
    """Test fold ``fold``: ``estimator`` fitted on its training folds less their validation split,
    scored on that split; no clip of the test fold is fitted or scored."""
    split = fold_split(meta, fold, "grouped", val_fraction, seed)
    fit, val = split["train"], split["val"]
    model = clone(estimator)
    # an inner search splits the fitted clips by official fold, as in official_folds_cv
    params = {"groups": meta["fold"].to_numpy()[fit]} if hasattr(model, "param_grid") else {}
    model.fit(x[fit], y[fit], **params)
    return {"fold": fold, "accuracy": float(accuracy_score(y[val], model.predict(x[val]))), "clips": len(val)}


def validation_scores(estimator: BaseEstimator, x: np.ndarray, y: np.ndarray, meta: pd.DataFrame,
                      val_fraction: float = 0.1, seed: int = 0, n_jobs: int = 1) -> list[dict]:
    """``validation_score`` for every test fold, ``n_jobs`` folds at a time (a searching estimator
    parallelises its own search instead)."""
    jobs = None if hasattr(estimator, "param_grid") else n_jobs
    return Parallel(n_jobs=jobs)(delayed(validation_score)(estimator, x, y, meta, int(fold), val_fraction, seed)
                                 for fold in np.unique(meta["fold"].to_numpy()))


def select_on_validation(runs: list[dict], validation: dict[str, list[dict]]) -> dict:
    """One ``runs``-shaped entry: per test fold, the test metrics of the row with the best validation
    accuracy (``row`` and ``val_accuracy`` beside them), mean and std over folds."""
    folds = []
    for i, fold in enumerate(run["fold"] for run in runs[0]["folds"]):
        best = max(runs, key=lambda run: validation[run["name"]][i]["accuracy"])  # max keeps the first of ties
        assert best["folds"][i]["fold"] == validation[best["name"]][i]["fold"] == fold
        folds.append({**best["folds"][i], "row": best["name"], "val_accuracy": validation[best["name"]][i]["accuracy"]})
    return summarize_run(SELECTED, folds)


def best_on_test(runs: list[dict]) -> dict:
    """The row with the best mean test accuracy: an optimistic upper bound, chosen on the test folds."""
    return max(runs, key=lambda run: run["mean"]["accuracy"])
