"""Feature modules (torch only, nothing else of ours): spectrograms, pooling, normalisation,
augmentation."""

from esc50_lightning.features.augment import (
    RandomCrop,
    RandomGain,
    RandomStretch,
    RandomTimeShift,
    SpecAugment,
    build_augment,
    stretch_and_shift,
)
from esc50_lightning.features.normalize import Standardize
from esc50_lightning.features.pipeline import CLIP_SECONDS, FrontendSettings, InputPipeline
from esc50_lightning.features.pooling import pool
from esc50_lightning.features.spectrogram import (
    FEATURE_KINDS,
    SpectrogramFrontend,
    compute_features,
    num_frames,
    power_to_db,
)

__all__ = [
    "CLIP_SECONDS", "FEATURE_KINDS", "FrontendSettings", "InputPipeline",
    "RandomCrop", "RandomGain", "RandomStretch", "RandomTimeShift", "SpecAugment",
    "SpectrogramFrontend",
    "Standardize", "build_augment", "compute_features", "num_frames", "pool", "power_to_db", "stretch_and_shift",
]
