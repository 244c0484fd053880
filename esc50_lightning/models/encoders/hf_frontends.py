"""The feature extractors of Hugging Face audio checkpoints in torch, batched, so that they run on
the training device and are part of the module (``classify``, ``export`` and ``ensemble`` need only
our checkpoint):

- ``ASTFeatureExtractor``: Kaldi fbank (``features.kaldi.KaldiFbank``: 25 ms Hann frames every
  10 ms at 16 kHz, pre-emphasis 0.97, 128 mel bins from 20 Hz to Nyquist, log), zero-padded or cut to
  ``max_length`` frames, then ``(x - mean) / (2 * std)``. Equal to the extractor's output (the test
  checks it to 1e-5).
- ``Wav2Vec2FeatureExtractor`` (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, ...): the waveform,
  normalised to zero mean and unit variance per clip when the extractor says so.

Other extractors (Whisper's, ...) are refused in one line (``build_frontend``).
"""

from __future__ import annotations

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.kaldi import KaldiFbank

SUPPORTED_EXTRACTORS = ("ASTFeatureExtractor", "Wav2Vec2FeatureExtractor")


class ASTFrontend(nn.Module):
    """``ASTFeatureExtractor`` in torch, batched: ``(batch, samples)`` at 16 kHz to ``(batch, max_length,
    num_mel_bins)``: Kaldi fbank, zero-padded (or cut) to ``max_length`` frames, then normalised as
    ``(x - mean) / (2 * std)`` (the padding too, as the extractor does)."""

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 128, max_length: int = 1024,
                 mean: float = -4.2677393, std: float = 4.5689974, do_normalize: bool = True) -> None:
        super().__init__()
        self.fbank = KaldiFbank(sample_rate, num_mel_bins)
        self.max_length, self.mean, self.std, self.do_normalize = max_length, mean, std, do_normalize

    @property
    def pad_value(self) -> float:
        """A zero of the fbank once normalised: what AST's SpecAugment masks with (it masks before
        normalising)."""
        return (0.0 - self.mean) / (2 * self.std) if self.do_normalize else 0.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.fbank(wave)
        frames = x.shape[1]
        if frames < self.max_length:
            x = nn.functional.pad(x, (0, 0, 0, self.max_length - frames))
        elif frames > self.max_length:
            x = x[:, : self.max_length]
        return (x - self.mean) / (2 * self.std) if self.do_normalize else x

    def export_friendly(self) -> ASTFrontend:
        self.fbank.export_friendly()
        return self


class WaveNorm(nn.Module):
    """``Wav2Vec2FeatureExtractor`` in torch: the waveform, with ``do_normalize`` zero mean and unit
    variance per clip (``(x - mean) / sqrt(var + 1e-7)``)."""

    def __init__(self, do_normalize: bool = True) -> None:
        super().__init__()
        self.do_normalize = do_normalize
        self.pad_value = 0.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.do_normalize:
            return wave
        mean = wave.mean(-1, keepdim=True)
        return (wave - mean) / torch.sqrt(wave.var(-1, unbiased=False, keepdim=True) + 1e-7)


def build_frontend(extractor: dict, max_length: int | None, mean: float | None, std: float | None) -> nn.Module:
    kind = extractor.get("feature_extractor_type")
    if kind == "ASTFeatureExtractor":
        return ASTFrontend(int(extractor.get("sampling_rate", 16000)), int(extractor.get("num_mel_bins", 128)),
                           int(max_length or extractor.get("max_length", 1024)),
                           float(extractor.get("mean", -4.2677393) if mean is None else mean),
                           float(extractor.get("std", 4.5689974) if std is None else std),
                           bool(extractor.get("do_normalize", True)))
    if kind == "Wav2Vec2FeatureExtractor":
        if int(extractor.get("feature_size", 1)) != 1:
            raise ESC50Error(f"Wav2Vec2FeatureExtractor with feature_size {extractor['feature_size']}: only raw mono "
                             "waveforms (feature_size 1) are supported")
        if max_length is not None or mean is not None or std is not None:
            raise ESC50Error("max_length, mean and std are AST settings: a model that reads the waveform has none")
        return WaveNorm(bool(extractor.get("do_normalize", True)))
    raise ESC50Error(f"the checkpoint's input pipeline is {kind}, which has no batched torch version here "
                     f"(supported: {', '.join(SUPPORTED_EXTRACTORS)})")

