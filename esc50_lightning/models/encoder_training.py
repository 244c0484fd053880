"""How ``AudioClassifier`` trains a pretrained encoder (``models.encoders``): its options checked,
its input checked against the DataModule's, its parameter groups, and its freezing by epoch."""

from __future__ import annotations

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.models.encoders.base import is_encoder


def check_encoder_options(net: nn.Module, encoder_lr_scale: float, freeze_encoder_epochs: int) -> None:
    """``encoder_lr_scale`` and ``freeze_encoder_epochs`` apply to a pretrained encoder only, and
    are never negative; refused in one line otherwise."""
    if (encoder_lr_scale != 1 or freeze_encoder_epochs) and not is_encoder(net):
        raise ESC50Error(f"model.encoder_lr_scale and model.freeze_encoder_epochs apply to pretrained encoders "
                         f"(models.encoders); {type(net).__name__} has none")
    if encoder_lr_scale < 0 or freeze_encoder_epochs < 0:
        raise ValueError(f"encoder_lr_scale and freeze_encoder_epochs must be >= 0, "
                         f"got {encoder_lr_scale} and {freeze_encoder_epochs}")


def check_encoder_input(net: nn.Module, settings: object) -> None:
    """The DataModule's ``settings`` (``features.pipeline.FrontendSettings``) hand the encoder
    waveforms at the rate it was pretrained at; refused in one line otherwise."""
    name = type(net).__name__
    if settings.feature != "waveform":
        raise ESC50Error(f"{name} reads the waveform: set --data.feature waveform (not {settings.feature})")
    if settings.sample_rate != net.sample_rate:
        raise ESC50Error(f"{name} was pretrained at {net.sample_rate} Hz: set --data.sample_rate "
                         f"{net.sample_rate} (not {settings.sample_rate})")


def parameter_groups(model: nn.Module, net: nn.Module, encoder_lr_scale: float
                     ) -> list[dict] | list[torch.nn.Parameter]:
    """Every parameter of ``model``; with a pretrained encoder as ``net``, two groups: the head's at
    the optimiser's ``lr`` and the encoder's with ``lr_scale`` ``encoder_lr_scale`` (applied by
    ``AudioClassifier.configure_optimizers``), or the head's alone for a frozen (probe) encoder."""
    if not is_encoder(net):
        return list(model.parameters())
    head = list(net.head_parameters())
    if getattr(net, "freeze", False):
        return [{"params": head, "name": "head"}]
    return [{"params": head, "name": "head"},
            {"params": list(net.encoder_parameters()), "name": "encoder", "lr_scale": float(encoder_lr_scale)}]


def freeze_for_epoch(net: nn.Module, epoch: int, freeze_encoder_epochs: int) -> None:
    """With ``freeze_encoder_epochs``: keep a pretrained (not probe-frozen) encoder frozen for the
    first that many epochs, then fine-tune it all."""
    if freeze_encoder_epochs and is_encoder(net) and not getattr(net, "freeze", False):
        net.set_encoder_frozen(epoch < freeze_encoder_epochs)
