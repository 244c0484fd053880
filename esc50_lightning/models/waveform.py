"""A trained model as one waveform-in, logits-out module, rebuilt from a checkpoint alone.

The checkpoint carries the feature settings (DataModule hyper-parameters), the normalisation
statistics and class names (DataModule state) and the network (model hyper-parameters and
weights); ``classify`` and ``export`` need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features import SpectrogramFrontend, Standardize
from esc50_lightning.models.classifier import shift_averaged

DATAMODULE_KEY = "ESC50DataModule"
FEATURE_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "top_db")


class ConvPowerSpectrogram(nn.Module):
    """STFT power as a strided ``conv1d`` with windowed cos/sin kernels: the same numbers as
    ``torchaudio.transforms.Spectrogram(power=2, center=True, pad_mode="constant")``, built from
    real-valued operators only, so ONNX can export it. Input ``(batch, samples)``."""

    def __init__(self, n_fft: int, win_length: int | None, hop_length: int) -> None:
        super().__init__()
        win_length = win_length or n_fft
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        window[left : left + win_length] = torch.hann_window(win_length, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        phase = 2 * torch.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft
        kernels = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window
        self.register_buffer("kernels", kernels.float()[:, None, :])
        self.n_fft, self.hop_length = n_fft, hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        x = nn.functional.pad(wave[:, None, :], (pad, pad))
        spec = nn.functional.conv1d(x, self.kernels, stride=self.hop_length)
        real, imag = spec.chunk(2, dim=1)
        return real**2 + imag**2


class WaveformClassifier(nn.Module):
    """``(batch, samples)`` waveform at ``sample_rate`` to ``(batch, classes)`` logits:
    spectrogram front end, training-fold normalisation, then the classifier (the network, with
    the test-time shift averaging the classifier was configured with)."""

    def __init__(self, frontend: SpectrogramFrontend, normalizer: Standardize, net: nn.Module,
                 tta_shifts: int = 1) -> None:
        super().__init__()
        self.frontend, self.normalizer, self.net, self.tta_shifts = frontend, normalizer, net, tta_shifts

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return shift_averaged(self.net, self.normalizer(self.frontend(wave)), self.tta_shifts)

    def export_friendly(self) -> WaveformClassifier:
        """Swap torch.stft (complex) for ``ConvPowerSpectrogram`` (real ops), in place."""
        stft = self.frontend.stft
        self.frontend.stft = ConvPowerSpectrogram(stft.n_fft, stft.win_length, stft.hop_length)
        return self


@dataclass
class LoadedModel:
    module: WaveformClassifier
    class_names: list[str]
    sample_rate: int
    clip_samples: int


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the waveform classifier of a checkpoint written by ``fit`` or ``sweep``."""
    from esc50_lightning.models.classifier import AudioClassifier

    path = Path(path)
    if not path.is_file():
        raise ESC50Error(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ESC50Error(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    data_hp, data_state = ckpt.get("datamodule_hyper_parameters"), ckpt.get(DATAMODULE_KEY)
    if not isinstance(data_hp, dict) or not isinstance(data_state, dict):
        raise ESC50Error(f"{path}: no ESC50DataModule settings inside (not written by esc50-lightning fit?)")
    if "net" not in ckpt.get("hyper_parameters", {}):
        raise ESC50Error(f"{path}: the network's configuration is not in this checkpoint (written before v0.1)")
    model = AudioClassifier.load_from_checkpoint(path, map_location=map_location)  # uncompiled (no Trainer)
    frontend = SpectrogramFrontend(data_hp["feature"], **{k: data_hp[k] for k in FEATURE_KEYS})
    normalizer = Standardize(data_state["normalizer"]["mean"].shape[0])
    normalizer.load_state_dict(data_state["normalizer"])
    module = WaveformClassifier(frontend, normalizer, model.net, model.hparams.get("tta_shifts", 1)).eval()
    clip = int(round(data_hp["sample_rate"] * data_hp["clip_seconds"]))
    return LoadedModel(module, list(data_state["class_names"]), data_hp["sample_rate"], clip)
