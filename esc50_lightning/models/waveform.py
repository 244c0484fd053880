"""A trained network behind its input pipeline: one waveform-in, logits-out module; several
trained networks behind one front end: an ensemble that exports as one graph."""

from __future__ import annotations

import torch
from torch import nn

from esc50_lightning.features.pipeline import InputPipeline
from esc50_lightning.models.time_shifts import shift_averaged


class WaveformClassifier(nn.Module):
    """``(batch, samples)`` waveform at the pipeline's sample rate to ``(batch, classes)`` logits:
    the input pipeline (spectrogram + training-fold normalisation), then the network, with the
    test-time shift averaging the classifier was configured with."""

    def __init__(self, pipeline: InputPipeline, net: nn.Module, tta_shifts: int = 1) -> None:
        super().__init__()
        self.pipeline, self.net, self.tta_shifts = pipeline, net, tta_shifts

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return shift_averaged(self.net, self.pipeline(wave), self.tta_shifts)

    def export_friendly(self) -> WaveformClassifier:
        """Swap torch.stft (complex) for real-valued operators, in place (for ONNX)."""
        self.pipeline.export_friendly()
        return self


class EnsembleClassifier(nn.Module):
    """Several trained networks behind one front end: ``(batch, samples)`` waveform to the log of
    the members' mean class probabilities (argmax and softmax read it as logits).

    The members must read the same spectrogram (equal ``FrontendSettings``), computed once; each
    keeps its own normaliser, since its statistics come from its own training folds, and its own
    test-time shifts.
    """

    def __init__(self, members: list[WaveformClassifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.settings = members[0].pipeline.settings
        if any(m.pipeline.settings != self.settings for m in members):
            raise ValueError("the members' input settings differ: they cannot share one front end")
        self.frontend = members[0].pipeline.frontend
        self.normalizers = nn.ModuleList(m.pipeline.normalizer for m in members)
        self.nets = nn.ModuleList(m.net for m in members)
        self.tta_shifts = [m.tta_shifts for m in members]

    def member_probabilities(self, features: torch.Tensor, tta_shifts: int | None = None) -> torch.Tensor:
        """``(members, batch, classes)`` class probabilities of the front end's (un-normalised)
        ``features``; ``tta_shifts`` overrides every member's own shift count."""
        return torch.stack([shift_averaged(net, normalize(features), tta_shifts or shifts).float().softmax(-1)
                            for normalize, net, shifts in zip(self.normalizers, self.nets, self.tta_shifts)])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.member_probabilities(self.frontend(wave)).mean(0).clamp_min(1e-12).log()

    def export_friendly(self) -> EnsembleClassifier:
        """Swap torch.stft (complex) for real-valued operators, in place (for ONNX)."""
        self.frontend.export_friendly()
        return self
