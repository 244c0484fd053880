"""The contract every pretrained encoder keeps, so that ``fit``, ``sweep``, ``ensemble``,
``classify``, ``export``, ``embed`` and the classical module work with it unchanged.

A pretrained encoder is a plain ``nn.Module`` used as the classifier's ``net``
(``--model.net.class_path esc50_lightning.models.encoders.PANNs``, ``init_args``: ``model:
Cnn14``, ``weights: PATH | name | null``, ``freeze: false``), built like every net from
``(n_bins, n_frames, num_classes, ...)`` (``models.classifier.NetFactory``).

**It owns its input pipeline.** It reads the raw waveform at its own ``sample_rate``: the
DataModule runs with ``--data.feature waveform`` (``features.pipeline``: an identity front end
and an identity normaliser, one clip is ``(1, samples)``, so ``n_bins`` is 1 and ``n_frames``
the clip's sample count) and ``--data.sample_rate`` equal to the encoder's (32000 for PANNs
Cnn14, 16000 for Cnn14_16k and AST); ``AudioClassifier`` refuses another rate in one line. The
publisher's front end (STFT, mel or Kaldi filters as buffers or frozen weights, log, the
publisher's normalisation) is part of the module, so it is in the checkpoint's state dict and
its settings in the checkpoint's hyper-parameters: a checkpoint is self-contained, and
``WaveformClassifier`` (identity pipeline + this net) is what ``classify`` and ``export`` run.

Input: ``(batch, 1, samples)`` (the DataModule's and ``WaveformClassifier``'s) or ``(batch,
samples)``. Output of ``forward``: ``(batch, num_classes)`` logits.

The parts (every encoder has them, with these names):

- ``sample_rate`` (Hz) and ``embedding_dim`` (int): attributes.
- ``frontend(wave) -> features``: the publisher's input, batched, on the wave's device; in
  training mode it ends with the encoder's own SpecAugment (``spec_augment`` settings of the
  encoder, off in ``eval()``), so masks act on the encoder's input, never on the waveform.
- ``encode(features) -> (batch, embedding_dim)``: the pretrained body up to its embedding (the
  publisher's ``embedding``: PANNs' 2,048-d or 512-d ``fc1`` output, AST's pooled output).
- ``embed(wave) = encode(frontend(wave))``: what ``esc50-lightning embed`` writes.
- ``head``: the new ``nn.Linear(embedding_dim, num_classes)`` (the publisher's AudioSet head is
  kept, frozen and never trained, for the parity tests: PANNs' ``audioset.fc_audioset``, the
  Hugging Face encoders' ``pretrained_head``).
- ``forward(wave) = head(dropout(embed(wave)))``; with ``embedding_input`` set (a linear probe
  over cached embeddings, below) ``forward`` takes ``(batch, embedding_dim)`` embeddings instead.
- ``encoder_parameters()`` / ``head_parameters()``: two disjoint parameter lists covering every
  trainable parameter; ``AudioClassifier`` makes two optimiser groups of them, the encoder's at
  ``lr * encoder_lr_scale`` (``--model.encoder_lr_scale 0.1``).
- ``set_encoder_frozen(frozen)``: ``requires_grad_(not frozen)`` on the encoder, and while frozen
  the encoder stays in ``eval()`` even when the classifier trains (``train()`` is overridden), so
  BatchNorm statistics stay the published ones and dropout is off. ``freeze=True`` at
  construction is the linear probe: frozen for good. ``--model.freeze_encoder_epochs N`` freezes
  it for the first N epochs of fine-tuning.
- ``encoder_key()``: a hash of the encoder's class, settings and weights (not the head's): the
  key of cached embeddings.

What ``AudioClassifier`` does with a net that has ``frontend`` (``is_encoder``):

- mixup (``--model.mixup_alpha``) mixes ``frontend(wave)`` (after SpecAugment, as PANNs does),
  then ``head(encode(mixed))``; a net without ``frontend`` is mixed at its input as before;
- a frozen (probe) encoder's embeddings are computed once per clip, in batches on the training
  device, cached on disk beside the features (``ESC50DataModule.use_embeddings``, keyed by the
  clips, the waveform settings and ``encoder_key()``), and the DataModule then serves
  ``(batch, embedding_dim)`` embeddings with ``embedding_input`` set: after one pass over the
  clips a probe trains in seconds, and every fold of a sweep reads the same cache. The saved
  checkpoint holds the whole encoder, so ``classify`` and ``export`` take waveforms as always.

What stays in the DataModule: the waveform-level augmentation (``data.augment.gain_db`` as a
linear gain, ``time_shift`` as a circular shift of samples). Spectrogram-level augmentation
(``freq_masks``, ``time_masks``, ``time_stretch``, ``freq_shift``, ``crop_seconds``) is refused
there with ``feature: waveform``, in one line pointing at the encoder's own ``spec_augment``.

Weights: ``weights`` is a local file, a published name fetched into
``~/.cache/esc50-lightning/weights/`` (``esc50_lightning.fetch``), or ``None`` (random
initialisation: tests and timing only). ``load_pretrained()`` reads them; ``AudioClassifier`` calls
it when ``fit`` starts (``setup("fit")``, before a resumed fit restores its own weights), never when
one of our checkpoints is rebuilt, so a checkpoint never needs the weights file. A file that does
not fit (another model's, truncated, wrong shapes) is an ``ESC50Error`` naming what was expected and
what was found; a partial load never happens silently (``load_matching``). ``freeze`` (the
constructor's, kept as an attribute) is what makes ``AudioClassifier`` treat the net as a probe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error


def as_batch_of_waves(wave: torch.Tensor) -> torch.Tensor:
    """``(batch, 1, samples)`` or ``(batch, samples)`` (or one ``(samples,)``) as ``(batch, samples)`` float."""
    if wave.dim() == 3:
        wave = wave.squeeze(1)  # no check on the size: under ONNX tracing it is a tensor
    elif wave.dim() == 1:
        wave = wave[None]
    return wave.float()


def check_waveform_input(name: str, n_bins: int) -> None:
    """One line when the DataModule hands spectrograms to an encoder that reads waveforms."""
    if n_bins != 1:
        raise ESC50Error(f"{name} reads the waveform and computes its own features: set --data.feature waveform "
                         f"(the input now has {n_bins} bins per frame)")


def error_detail(err: BaseException, limit: int) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters: the detail of a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else "no detail"


def few(items: list[str]) -> str:
    """The first three of ``items`` and how many more: a one-line error stays one line."""
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def mismatch_summary(missing: list[str], unexpected: list[str], shapes: list[str], errors: Sequence[str] = ()) -> str:
    """What a weights file has wrong, as one clause (``''`` when nothing): missing and unexpected keys,
    mismatched shapes, other loading errors, a few of each. Shared by ``load_matching`` and the Hugging
    Face loader, so both say it alike."""
    found = [f"{len(missing)} missing keys ({few(missing)})" if missing else "",
             f"{len(unexpected)} unexpected keys ({few(unexpected)})" if unexpected else "",
             f"{len(shapes)} mismatched shapes ({few(shapes)})" if shapes else "",
             f"errors ({few(list(errors))})" if errors else ""]
    return "; ".join(f for f in found if f)


def load_matching(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, expected: str) -> None:
    """Load ``state`` into ``module`` only if every key and shape matches; otherwise one
    ``ESC50Error`` line: ``source`` (the file), ``expected`` (what it should be), and what was
    found (``mismatch_summary``)."""
    own = module.state_dict()
    state = dict(state)
    for k in own:  # BatchNorm's counter, absent from files saved before torch 0.4.1: ours stands in
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ESC50Error(f"{source}: not {expected}: {mismatch_summary(missing, unexpected, shapes)}")
    module.load_state_dict(state, strict=True)


class PretrainedEncoder(nn.Module):
    """Base class of the pretrained encoders (see the module docstring for the contract).

    A subclass sets ``sample_rate`` and ``embedding_dim``, builds its encoder modules and
    ``self.head``, lists its encoder's modules in ``encoder_modules()`` and implements
    ``frontend`` and ``encode``; the rest is here.
    """

    sample_rate: int
    embedding_dim: int

    def __init__(self, num_classes: int, freeze: bool = False, head_dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.freeze = num_classes, freeze
        self.head_dropout = nn.Dropout(head_dropout)
        self.encoder_frozen = False
        self.embedding_input = False  # set while the DataModule serves cached embeddings (a probe)

    # ----- what a subclass provides -----
    def encoder_modules(self) -> list[nn.Module]:
        """The modules of the pretrained encoder (everything but ``head``)."""
        raise NotImplementedError

    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def settings(self) -> dict:
        """What, besides the weights, makes the encoder's embedding (for ``encoder_key``)."""
        return {"sample_rate": self.sample_rate, "embedding_dim": self.embedding_dim}

    # ----- shared -----
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, embedding_dim)`` embeddings of ``(batch, [1,] samples)`` waveforms."""
        return self.encode(self.frontend(wave))

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the encoder's input (``frontend``'s output): where mixup joins."""
        return self.head(self.head_dropout(self.encode(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding_input:
            return self.head(self.head_dropout(x.float()))
        return self.classify_features(self.frontend(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.encoder_modules() for p in m.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def set_encoder_frozen(self, frozen: bool) -> None:
        self.encoder_frozen = bool(frozen)
        for p in self.encoder_parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> PretrainedEncoder:
        super().train(mode)
        if self.encoder_frozen:
            for m in self.encoder_modules():
                m.eval()
        return self

    def _encoder_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for i, m in enumerate(self.encoder_modules()):
            for name, t in m.state_dict().items():
                yield f"{i}.{name}", t

    @torch.no_grad()
    def encoder_key(self) -> str:
        """Hash of the class, ``settings()`` and the encoder's tensors: names cached embeddings."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(json.dumps([type(self).__qualname__, self.settings()], sort_keys=True, default=str).encode())
        for name, t in self._encoder_tensors():
            digest.update(name.encode())
            digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()


def is_encoder(net: nn.Module) -> bool:
    """Whether ``net`` keeps this contract (has its own ``frontend`` and ``encode``)."""
    return callable(getattr(net, "frontend", None)) and callable(getattr(net, "encode", None))
