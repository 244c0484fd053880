"""scikit-learn pipelines for the classical baselines: optional scaler, then a classifier."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from esc50_lightning.errors import ESC50Error

MODELS = ("svm", "logreg", "rf")
USES_C = ("svm", "logreg")


def classifier(model: str, C: float | None, params: dict | None = None, seed: int = 0) -> BaseEstimator:
    """``svm`` (RBF SVC), ``logreg`` (multinomial logistic regression) or ``rf`` (random forest).

    ``C`` is the inverse regularisation strength (the seed's "lambda"); the random forest has none.
    """
    params = dict(params or {})
    if model == "svm":
        return SVC(C=C, **{"kernel": "rbf", "gamma": "scale", **params})
    if model == "logreg":
        return LogisticRegression(C=C, **{"max_iter": 2000, **params})
    if model == "rf":
        return RandomForestClassifier(**{"n_estimators": 500, "random_state": seed, **params})
    raise ESC50Error(f"unknown classical model {model!r}; choose from {MODELS} (append _cv to search)")


def make_pipeline(
    model: str, C: float | None = 1.0, norm: bool = True, params: dict | None = None,
    search: dict | None = None, n_jobs: int = 1, seed: int = 0,
) -> BaseEstimator:
    """``StandardScaler`` (when ``norm``) + classifier, as one Pipeline fitted on training clips only.

    With ``search`` (a parameter grid such as ``{"C": [1, 10], "gamma": ["scale", 0.01]}``), the
    pipeline is wrapped in ``GridSearchCV`` whose inner splits hold out one training fold at a
    time (``GroupKFold`` on the fold numbers passed as ``groups``): hyper-parameters are chosen
    inside the training folds, never on the test fold.
    """
    steps = [("scale", StandardScaler())] if norm else []
    pipe = Pipeline([*steps, ("clf", classifier(model, C, params, seed))])
    if not search:
        return pipe
    grid = {f"clf__{k}": v for k, v in search.items()}
    return GridSearchCV(pipe, grid, cv=GroupKFold(n_splits=4), scoring="accuracy", n_jobs=n_jobs)
