"""PANNs (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern
Recognition"): Cnn6, Cnn10, Cnn14 and Cnn14_16k, pretrained on AudioSet, as our classifier's ``net``.

Our own implementation of the published definition (``pytorch/models.py`` of
``qiuqiangkong/audioset_tagging_cnn``, front end as in ``torchlibrosa``): its state dict has
exactly the names and shapes of the published checkpoints (Zenodo record 3987831, each a
``torch.save`` of ``{"model": state_dict, ...}``), so those files load with no key left over or
missing. ``PANNs.audioset`` is that network, AudioSet head (``fc_audioset``, 527 classes) included
(kept for ``clipwise``, never trained); ``PANNs.head`` is the new ``num_classes``-way layer on the
embedding (``fc1``'s output after ReLU: 2,048-d for Cnn14, 512-d for Cnn6 and Cnn10).

The input pipeline is the publisher's and lives in the state dict: reflect-padded STFT as two
frozen ``Conv1d`` (window ``n_fft``, Hann), power, Slaney mel filters (``melW``), ``10 log10`` with
amin 1e-10, ref 1 and no top_db, then ``bn0`` over the mel bins and, in training, SpecAugment
(PANNs': two time stripes of up to 64 frames, two frequency stripes of up to 8 bins).
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.augment import SpecAugment
from esc50_lightning.models.encoders.base import (
    PretrainedEncoder,
    as_batch_of_waves,
    check_waveform_input,
    load_matching,
)

ZENODO = "https://zenodo.org/record/3987831/files/{}?download=1"
AUDIOSET_CLASSES = 527


@dataclass(frozen=True)
class PANNsSpec:
    """One published PANNs model: its network, its front end and its checkpoint file."""

    block: str  # "3x3": two 3x3 conv-BN-ReLU layers per block (Cnn10, Cnn14); "5x5": one (Cnn6)
    channels: tuple[int, ...]
    sample_rate: int
    window: int
    hop: int
    fmin: float
    fmax: float
    file: str
    md5: str | None  # published in the PANNs repository's README; None where none is

    @property
    def url(self) -> str:
        return ZENODO.format(quote(self.file))

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]


_CNN14 = (64, 128, 256, 512, 1024, 2048)
PANNS_MODELS: dict[str, PANNsSpec] = {
    "Cnn6": PANNsSpec("5x5", (64, 128, 256, 512), 32000, 1024, 320, 50, 14000, "Cnn6_mAP=0.343.pth",
                      "e25e26b84585b14c7754c91e48efc9be"),
    "Cnn10": PANNsSpec("3x3", (64, 128, 256, 512), 32000, 1024, 320, 50, 14000, "Cnn10_mAP=0.380.pth",
                       "bfb1f1f9968938fa8ef4012b8471f5f6"),
    "Cnn14": PANNsSpec("3x3", _CNN14, 32000, 1024, 320, 50, 14000, "Cnn14_mAP=0.431.pth",
                       "541141fa2ee191a88f24a3219fff024e"),
    "Cnn14_16k": PANNsSpec("3x3", _CNN14, 16000, 512, 160, 50, 8000, "Cnn14_16k_mAP=0.438.pth", None),
}
MEL_BINS = 64


# ----- the front end, under the published names (torchlibrosa's Spectrogram and LogmelFilterBank) -----
class _STFT(nn.Module):
    """``|STFT|`` as two frozen ``Conv1d`` over the reflect-padded wave (``conv_real``, ``conv_imag``:
    the DFT rows times a periodic Hann window), exportable to ONNX as it is."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        t = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k * t / n_fft
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(angle) * window)[:, None].float())
            self.conv_imag.weight.copy_((-torch.sin(angle) * window)[:, None].float())
        self.requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(wave[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x), self.conv_imag(x)  # (batch, bins, frames) each


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)
        return (real.square() + imag.square()).transpose(1, 2)[:, None]  # (batch, 1, frames, bins)


class _LogmelFilterBank(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        fb = AF.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
        self.melW = nn.Parameter(fb, requires_grad=False)  # (bins, mels), as librosa.filters.mel(...).T

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(mel.clamp_min(1e-10))  # ref 1, amin 1e-10, no top_db


# ----- the network -----
def _init_layer(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        layer.bias.data.fill_(0.0)


class _ConvBlock(nn.Module):
    """Cnn10/Cnn14's block: two 3x3 conv-BN-ReLU layers, then average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        _init_layer(self.conv1)
        _init_layer(self.conv2)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class _ConvBlock5x5(nn.Module):
    """Cnn6's block: one 5x5 conv-BN-ReLU layer, then average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        _init_layer(self.conv1)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class AudioSetNet(nn.Module):
    """The published network under the published names: front end, ``bn0``, conv blocks, ``fc1``
    and the 527-way ``fc_audioset``. Its ``state_dict()`` is the published checkpoint's ``model``."""

    def __init__(self, spec: PANNsSpec, width: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        channels = [max(1, round(c * width)) for c in spec.channels]
        self.spectrogram_extractor = _Spectrogram(spec.window, spec.hop)
        self.logmel_extractor = _LogmelFilterBank(spec.sample_rate, spec.window, MEL_BINS, spec.fmin, spec.fmax)
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        block = _ConvBlock if spec.block == "3x3" else _ConvBlock5x5
        c_in = 1
        for i, c in enumerate(channels, 1):
            setattr(self, f"conv_block{i}", block(c_in, c))
            c_in = c
        self.blocks = len(channels)
        # Cnn14 pools 2x2 after every block but the last; Cnn6 and Cnn10 after each of their four
        self.pools = [2] * self.blocks if self.blocks == 4 else [2] * (self.blocks - 1) + [1]
        self.fc1 = nn.Linear(c_in, c_in)
        self.fc_audioset = nn.Linear(c_in, AUDIOSET_CLASSES)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, frames, 64)`` log-mel, normalised by ``bn0`` over the mel bins."""
        with torch.autocast(wave.device.type, enabled=False):  # the publisher's fp32 front end, in any precision
            x = self.logmel_extractor(self.spectrogram_extractor(wave.float()))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, frames, 64)`` (after ``logmel``) to the ``fc1`` embedding (after ReLU)."""
        for i, pool in enumerate(self.pools, 1):
            x = F.dropout(getattr(self, f"conv_block{i}")(x, pool), 0.2, self.training)
        x = x.mean(3)
        x = x.amax(2) + x.mean(2)
        x = F.dropout(x, 0.5, self.training)
        return F.relu(self.fc1(x))


class PANNs(PretrainedEncoder):
    """A PANNs network pretrained on AudioSet, with a new ``num_classes``-way head.

    Args:
        n_bins, n_frames, num_classes: as every net (``NetFactory``); PANNs reads the waveform,
            so ``n_bins`` must be 1 (``--data.feature waveform``).
        model: ``Cnn6``, ``Cnn10``, ``Cnn14`` (32 kHz) or ``Cnn14_16k`` (16 kHz); set
            ``--data.sample_rate`` to its rate (``AudioClassifier`` checks).
        weights: the published checkpoint: ``audioset`` (or the model's name, or the published
            file name) fetches it into ``~/.cache/esc50-lightning/weights/`` (checked against the
            published md5 where there is one); a path reads a local file, or the published file
            name inside a folder; ``None``: random initialisation (tests, timing). Read when
            training starts (``fit``, ``sweep``: ``load_pretrained``), never when one of our
            checkpoints is rebuilt: those hold the weights themselves.
        freeze: linear probe: the encoder is frozen and stays in eval mode (BatchNorm statistics as
            published); only ``head`` trains, on embeddings cached once per clip.
        head_dropout: dropout on the embedding before ``head`` (PANNs' own: 0.5).
        freq_masks, freq_width, time_masks, time_width: SpecAugment on the log-mel in training
            (PANNs': 2 stripes of up to 8 bins, 2 of up to 64 frames; 0 masks: off).
        width: channel multiplier. 1 is the published network; any other width has no published
            weights (tests and timing only).
    """

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int, model: str = "Cnn14", weights: str | None = None,
        freeze: bool = False, head_dropout: float = 0.5, freq_masks: int = 2, freq_width: int = 8,
        time_masks: int = 2, time_width: int = 64, width: float = 1.0,
    ) -> None:
        super().__init__(num_classes, freeze, head_dropout)
        check_waveform_input(f"PANNs {model}", n_bins)
        if model not in PANNS_MODELS:
            raise ESC50Error(f"unknown PANNs model {model!r}; choose one of {', '.join(PANNS_MODELS)}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.model_name, self.weights, self.width = model, weights, width
        self.spec = PANNS_MODELS[model]
        self.sample_rate = self.spec.sample_rate
        self.audioset = AudioSetNet(self.spec, width)
        self.audioset.fc_audioset.requires_grad_(False)  # the AudioSet head: loaded, never trained
        self.embedding_dim = self.audioset.fc1.out_features
        self.spec_augment = SpecAugment(freq_masks, freq_width, time_masks, time_width)
        self.head = nn.Linear(self.embedding_dim, num_classes)
        self.pretrained_loaded = False
        if freeze:
            self.set_encoder_frozen(True)

    # ----- the contract -----
    def encoder_modules(self) -> list[nn.Module]:
        return [self.audioset]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The trainable part of the encoder: not the fixed front end (STFT and mel filters,
        frozen by the publisher too) nor the AudioSet head."""
        fixed = {id(p) for m in (self.audioset.spectrogram_extractor, self.audioset.logmel_extractor,
                                 self.audioset.fc_audioset) for p in m.parameters()}
        return [p for p in self.audioset.parameters() if id(p) not in fixed]

    def settings(self) -> dict:
        return {**super().settings(), "model": self.model_name, "width": self.width}

    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, frames, 64)``: the publisher's log-mel after ``bn0``, SpecAugment in training."""
        x = self.audioset.logmel(as_batch_of_waves(wave))
        if self.training and not self.encoder_frozen:
            x = self.spec_augment(x[:, 0].transpose(1, 2)).transpose(1, 2)[:, None]
        return x

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.audioset.embedding(features)

    @torch.no_grad()
    def clipwise(self, wave: torch.Tensor) -> torch.Tensor:
        """The published 527-way AudioSet probabilities (the parity test's second output)."""
        return torch.sigmoid(self.audioset.fc_audioset(self.embed(wave)))

    # ----- weights -----
    def load_pretrained(self) -> None:
        """Load ``weights`` into the encoder (once); a no-op when ``weights`` is ``None``."""
        if self.weights is None or self.pretrained_loaded:
            return
        if self.width != 1:
            raise ESC50Error(f"PANNs width {self.width}: the published {self.model_name} weights are for width 1")
        self.load_published(resolve_weights(self.model_name, self.weights))
        self.pretrained_loaded = True

    def load_published(self, path: str | Path) -> None:
        """Read a published-format file (``{"model": state_dict}``) into ``audioset``; one line if it
        is not this model's (another model's, truncated, wrong shapes), never a partial load."""
        path = Path(path)
        expected = f"a PANNs {self.model_name} checkpoint ({self.spec.file})"
        try:
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err:  # objects besides tensors (a training run's sampler state)?
                if "Unsupported global" not in str(err) and "safe_globals" not in str(err):
                    raise  # not a pickle at all: below
                if not self.spec.md5 or file_md5(path) != self.spec.md5:
                    raise ESC50Error(f"{path}: holds pickled objects besides tensors and is not the published "
                                     f"file (its md5 differs); expected {expected}") from None
                saved = torch.load(path, map_location="cpu", weights_only=False)  # the publisher's, byte for byte
        except ESC50Error:
            raise
        except FileNotFoundError:
            raise ESC50Error(f"{path}: weights file not found") from None
        except Exception as err:  # noqa: BLE001 - truncated, not a torch file, pickled code: one line
            raise ESC50Error(f"{path}: not a readable torch checkpoint ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'}); expected {expected}; "
                             "a download cut short? delete the file and fetch it again") from None
        state = saved.get("model", saved) if isinstance(saved, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ESC50Error(f"{path}: no state dict inside (a dict with a 'model' entry of tensors); "
                             f"expected {expected}")
        load_matching(self.audioset, state, str(path), expected)


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(model: str, weights: str) -> Path:
    """The local file ``weights`` names: a file, a folder holding the published file, or (``audioset``,
    the model's name or its published file name, not found locally) the published file fetched into
    the weights cache."""
    spec = PANNS_MODELS[model]
    path = Path(weights).expanduser()
    if path.is_dir():
        inside = path / spec.file
        if not inside.is_file():
            raise ESC50Error(f"{path}: no {spec.file} in this folder (the published PANNs {model} checkpoint)")
        return inside
    if path.is_file():
        return path
    if weights in ("audioset", model, spec.file):
        from esc50_lightning.fetch import fetch_weights

        return fetch_weights(spec.url, spec.file, f"md5:{spec.md5}" if spec.md5 else None,
                             what=f"PANNs {model} AudioSet checkpoint")
    raise ESC50Error(f"{weights}: weights file not found; give a local file or folder, or `audioset` to fetch "
                     f"the published {spec.file}")
