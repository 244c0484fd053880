"""PANNs (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern
Recognition"): Cnn6, Cnn10, Cnn14 and Cnn14_16k, pretrained on AudioSet, as our classifier's ``net``.

Here: which models are published (``PANNS_MODELS``: network, front end, checkpoint file, md5),
where a model's weights are (``resolve_weights``) and the encoder ``PANNs``. The network, under the
published names so that the Zenodo checkpoints load with no key left over or missing:
``panns_net``; reading and checking a published file: ``panns_weights``. ``PANNs.audioset`` is that
network, AudioSet head (``fc_audioset``, 527 classes) included (kept for ``clipwise``, never
trained); ``PANNs.head`` is the new ``num_classes``-way layer on the embedding (``fc1``'s output
after ReLU: 2,048-d for Cnn14, 512-d for Cnn6 and Cnn10). In training the log-mel gets PANNs'
SpecAugment (two time stripes of up to 64 frames, two frequency stripes of up to 8 bins).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.augment import SpecAugment
from esc50_lightning.models.encoders.base import (
    PretrainedEncoder,
    as_batch_of_waves,
    check_waveform_input,
    load_matching,
)
from esc50_lightning.models.encoders.panns_net import (  # noqa: F401 - re-exported: their home before the split
    AUDIOSET_CLASSES,
    MEL_BINS,
    AudioSetNet,
    _LogmelFilterBank,
    _Spectrogram,
)
from esc50_lightning.models.encoders.panns_weights import file_md5, read_published  # noqa: F401

ZENODO = "https://zenodo.org/record/3987831/files/{}?download=1"


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
        load_matching(self.audioset, read_published(path, expected, self.spec.md5), str(path), expected)


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
