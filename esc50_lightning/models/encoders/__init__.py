"""Pretrained audio encoders as networks of our classifier (contract: ``encoders.base``).

``PANNs`` (Cnn6, Cnn10, Cnn14, Cnn14_16k, from the published AudioSet checkpoints) needs nothing
beyond torch; the Hugging Face encoders (``encoders.hf``) need the ``hf`` extra and are imported
only when asked for.
"""

from __future__ import annotations

import importlib

from esc50_lightning.models.encoders.base import PretrainedEncoder, is_encoder
from esc50_lightning.models.encoders.panns import PANNS_MODELS, PANNs

__all__ = ["PANNS_MODELS", "PANNs", "PretrainedEncoder", "is_encoder"]


def __getattr__(name: str):  # the Hugging Face encoders, without importing transformers up front
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        hf = importlib.import_module("esc50_lightning.models.encoders.hf")
    except ModuleNotFoundError as err:
        if err.name != "esc50_lightning.models.encoders.hf":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        return getattr(hf, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
