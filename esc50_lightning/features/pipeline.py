"""The model's input pipeline: waveform -> spectrogram -> training-fold normalisation.

One settings dataclass (``FrontendSettings``) says how a clip becomes a spectrogram; one module
(``InputPipeline``) holds the front end and the normaliser. The DataModule computes features
with it, the checkpoint carries its settings and statistics, and ``classify``, ``export``,
ensembles and distillation teachers rebuild it from there: the input is defined once.

``feature: waveform`` is the pipeline of a network that owns its input (the pretrained encoders,
``models.encoders.base``): the clip itself, ``(1, samples)``, through an identity front end and
an identity normaliser; the network's own front end is in its state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import nn

from esc50_lightning.features.normalize import Standardize
from esc50_lightning.features.spectrogram import SpectrogramFrontend, num_frames

CLIP_SECONDS = 5.0  # every ESC-50 clip; other audio is padded or windowed to this length
InputKind = Literal["linear", "log_freq", "log_mel", "waveform"]  # FEATURE_KINDS, or the clip itself


class WaveformFrontend(nn.Module):
    """The identity front end of ``feature: waveform``: ``(..., samples)`` to ``(..., 1, samples)``."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave.float().unsqueeze(-2)

    def export_friendly(self) -> WaveformFrontend:
        return self


class IdentityNormalizer(nn.Module):
    """The normaliser of ``feature: waveform``: nothing to fit, nothing to save (the encoder
    normalises its own features as its publisher did)."""

    def fit(self, features: torch.Tensor) -> IdentityNormalizer:
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True)
class FrontendSettings:
    """What turns a clip into the network's input; field names are the DataModule's arguments.

    ``feature``: ``linear``, ``log_freq`` or ``log_mel``, or ``waveform`` (the clip itself, for a
    network with its own front end); ``sample_rate`` (Hz) and ``clip_seconds`` fix the waveform;
    the rest is ``SpectrogramFrontend``'s (unused by ``waveform``).
    """

    feature: InputKind = "log_mel"
    sample_rate: int = 16000
    clip_seconds: float = CLIP_SECONDS
    n_fft: int = 1024
    win_length: int | None = None
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float | None = 80.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping) -> FrontendSettings:
        """The settings among ``values`` (e.g. a DataModule's hyper-parameters); others are ignored."""
        return cls(**{name: values[name] for name in cls.names() if name in values})

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def shape(self) -> tuple[int, int]:
        """``(bins, frames)`` of one clip's spectrogram; ``(1, samples)`` for ``waveform``."""
        if self.feature == "waveform":
            return 1, self.clip_samples
        bins = self.n_fft // 2 + 1 if self.feature == "linear" else self.n_mels
        return bins, num_frames(self.clip_samples, self.hop_length)

    def frontend(self) -> SpectrogramFrontend | WaveformFrontend:
        if self.feature == "waveform":
            return WaveformFrontend()
        return SpectrogramFrontend(self.feature, self.sample_rate, self.n_fft, self.win_length, self.hop_length,
                                   self.n_mels, self.f_min, self.f_max, self.top_db)


class InputPipeline(nn.Module):
    """Waveform ``(batch, samples)`` at ``settings.sample_rate`` to the normalised spectrogram
    ``(batch, bins, frames)`` a network reads.

    ``features`` and ``normalize`` are the two halves, for callers that cache features between
    them; ``fit`` sets the normaliser from training-fold features only.
    """

    def __init__(self, settings: FrontendSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or FrontendSettings()
        self.frontend = self.settings.frontend()
        self.normalizer = IdentityNormalizer() if self.settings.feature == "waveform" \
            else Standardize(self.settings.shape[0])

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return self.normalizer(features)

    def fit(self, features: torch.Tensor) -> InputPipeline:
        self.normalizer.fit(features)
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.features(wave))

    def export_friendly(self) -> InputPipeline:
        """The front end with real-valued operators only, in place (for ONNX)."""
        self.frontend.export_friendly()
        return self

    def checkpoint_state(self) -> dict:
        """Everything needed to rebuild this pipeline: settings and normalisation statistics."""
        return {"settings": self.settings.as_dict(), "normalizer": self.normalizer.state_dict()}

    @classmethod
    def from_checkpoint_state(cls, state: Mapping) -> InputPipeline:
        pipeline = cls(FrontendSettings.from_mapping(state["settings"]))
        pipeline.normalizer.load_state_dict(state["normalizer"])
        return pipeline
