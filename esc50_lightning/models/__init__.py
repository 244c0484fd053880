"""The classifier LightningModule and the networks it wraps."""

from esc50_lightning.models.classifier import AudioClassifier
from esc50_lightning.models.nets import CNN, MLP, Conv1D
from esc50_lightning.models.waveform import EnsembleClassifier, WaveformClassifier

__all__ = ["CNN", "MLP", "AudioClassifier", "Conv1D", "EnsembleClassifier", "WaveformClassifier"]
