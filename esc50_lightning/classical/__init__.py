"""Classical baselines: scikit-learn pipelines on the DataModule's pooled features."""

from esc50_lightning.classical.crossval import official_folds_cv
from esc50_lightning.classical.estimators import make_pipeline

__all__ = ["make_pipeline", "official_folds_cv"]
