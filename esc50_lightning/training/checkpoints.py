"""A checkpoint written by ``fit`` or ``sweep``, rebuilt as a waveform-in model from the file alone.

The checkpoint carries the input pipeline (the DataModule's state: settings, normalisation
statistics, class names), the network (the classifier's hyper-parameters and weights) and the
split it was trained on (the DataModule's hyper-parameters); ``classify``, ``export``, ``test``
and ensembles need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from esc50_lightning.data import ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.models import AudioClassifier
from esc50_lightning.models.waveform import EnsembleClassifier, WaveformClassifier

DATA_KEY = ESC50DataModule.__qualname__  # where Lightning files the DataModule's state_dict


@dataclass
class LoadedModel:
    module: WaveformClassifier | EnsembleClassifier
    class_names: list[str]
    sample_rate: int
    clip_samples: int
    data_settings: dict  # the DataModule's hyper-parameters: fold, split, front end (an ensemble: its first member's)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """The checkpoint as a dict; one line naming the file when it is missing or not one of ours.
    ``mmap``: its tensors stay on disk until read (for a look at its settings)."""
    path = Path(path)
    if not path.is_file():
        raise ESC50Error(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ESC50Error(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("datamodule_hyper_parameters"), dict) \
            or not isinstance(ckpt.get(DATA_KEY), dict):
        raise ESC50Error(f"{path}: no ESC50DataModule settings inside (not written by esc50-lightning fit?)")
    if "net" not in ckpt.get("hyper_parameters", {}):
        raise ESC50Error(f"{path}: the network's configuration is not in this checkpoint (written before v0.1)")
    return ckpt


def data_settings(path: str | Path) -> dict:
    """The DataModule hyper-parameters a checkpoint was trained with (its test fold, split, input)."""
    return dict(read_checkpoint(path)["datamodule_hyper_parameters"])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the waveform classifier of a checkpoint written by ``fit`` or ``sweep`` (uncompiled)."""
    ckpt = read_checkpoint(path, map_location)
    hparams, state = ckpt["datamodule_hyper_parameters"], ckpt[DATA_KEY]
    pipeline = ESC50DataModule.pipeline_from_checkpoint(state, hparams)
    model = AudioClassifier.load_from_checkpoint(path, map_location=map_location)
    module = WaveformClassifier(pipeline, model.net, model.hparams.get("tta_shifts", 1)).eval()
    settings = pipeline.settings
    return LoadedModel(module, list(state["class_names"]), settings.sample_rate, settings.clip_samples, dict(hparams))


def load_ensemble(paths: list[str | Path], map_location: str | torch.device = "cpu") -> LoadedModel:
    """Several checkpoints as one model (``EnsembleClassifier``: one front end, the members' mean
    probabilities); one path is ``load_checkpoint``'s model itself. Members must read the same input
    and name the same classes: otherwise one line names the setting that differs."""
    if len(paths) == 1:
        return load_checkpoint(paths[0], map_location)
    members = [load_checkpoint(path, map_location) for path in paths]
    first = members[0]
    for path, member in zip(paths[1:], members[1:]):
        ours, theirs = first.module.pipeline.settings.as_dict(), member.module.pipeline.settings.as_dict()
        for key in ours:
            if ours[key] != theirs[key]:
                raise ESC50Error(f"{path} has data.{key}={theirs[key]!r}, {paths[0]} {ours[key]!r}: an ensemble "
                                 "shares one front end, so its members' input settings must agree")
        if member.class_names != first.class_names:
            raise ESC50Error(f"{path} names other classes than {paths[0]}: their probabilities cannot be averaged")
    module = EnsembleClassifier([member.module for member in members]).eval()
    return LoadedModel(module, first.class_names, first.sample_rate, first.clip_samples, first.data_settings)
