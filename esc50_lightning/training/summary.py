"""TensorBoard summary runs: one HParams row per sweep, ensemble, classical grid row and fold.

A row is a run folder holding the hparams plugin's session start (hyper-parameters) and end
summaries and the metrics as scalars. No run writes the plugin's *experiment* summary on purpose:
the HParams dashboard takes its columns from the first run that has one and ignores the rest,
while without any it collects the columns from every run, so sweeps, classical rows and folds
written at different times line up in one table.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from esc50_lightning.results import counted_accuracy, markdown_table

EVENTS = "events.out.tfevents."
AUGMENT_SHORT = {"gain_db": "gain", "time_shift": "shift", "time_stretch": "stretch", "freq_shift": "fshift",
                 "crop_seconds": "crop"}
LAYOUT_ONLY = ("channels_last",)  # net arguments that change speed, not the model


def _get(tree: dict, *keys: str, default: object = None) -> object:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def _short(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _hparam_value(value: object) -> str | int | float | None:
    """What the hparams plugin can show: numbers and strings (bools and lists as text)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return json.dumps(value, separators=(",", ":"))


def net_summary(init_args: dict) -> str:
    """``channels=32-64-128-256 dropout=0.3 residual``: the net's arguments that change the model."""
    parts = []
    for key, value in (init_args or {}).items():
        if key in LAYOUT_ONLY or value is None or value is False:
            continue
        parts.append(key if value is True else f"{key}={_hparam_value(value)}")
    return " ".join(parts) or "default"


def augment_summary(augment: dict | None) -> str:
    """``gain6 shift0.5 F2x8 T2x25``: the augmentations switched on (F/T: SpecAugment masks x width)."""
    augment = {k: v for k, v in (augment or {}).items() if v}
    parts = []
    for axis, name in (("F", "freq"), ("T", "time")):
        masks, width = augment.pop(f"{name}_masks", 0), augment.pop(f"{name}_width", 0)
        if masks and width:
            parts.append(f"{axis}{masks}x{width}")
    parts = [f"{AUGMENT_SHORT.get(k, k + '=')}{v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
             for k, v in augment.items()] + parts
    return " ".join(parts) or "none"


def _teachers(paths: list[str] | None) -> str:
    """The sweep a distillation teacher came from (the folder above ``fold{fold}``), or ``none``."""
    names = []
    for path in paths or []:
        parts = Path(path).parts
        at = next((i for i, p in enumerate(parts) if p.startswith("fold")), len(parts) - 1)
        names.append(parts[at - 1] if at > 0 else path)
    return "+".join(names) or "none"


def train_clips(dataset: dict, config: dict) -> int | None:
    """The clips a model trained on: as its run recorded them, else (runs written before that was
    recorded) what its split took from five balanced folds: four, less the validation share
    unless ``val_strategy`` is ``none``. An ensemble's: its first member's."""
    if dataset.get("train_clips"):
        return dataset["train_clips"]
    clips, config = dataset.get("clips"), (config.get("member_configs") or [config])[0] or {}
    if not clips:
        return None
    training = clips - clips // 5
    if _get(config, "data", "val_strategy") == "none":
        return training
    return training - round(training * (_get(config, "data", "val_fraction") or 0.1))


def run_hparams(config: dict, dataset: dict, kind: str = "sweep") -> dict:
    """The hyper-parameters of a training run, from the resolved LightningCLI config: the same
    names for a fold, a sweep and an ensemble, so their HParams rows share columns."""
    net = _get(config, "model", "net")
    callbacks = [_short(c["class_path"]) for c in _get(config, "trainer", "callbacks", default=None) or []
                 if isinstance(c, dict) and "class_path" in c]
    hp = {
        "kind": kind,
        "model": _short(net["class_path"]) if isinstance(net, dict) else kind,
        "net": net_summary(net.get("init_args", {})) if isinstance(net, dict) else None,
        "feature": _get(config, "data", "feature"),
        "n_mels": _get(config, "data", "n_mels"),
        "hop": _get(config, "data", "hop_length"),
        "epochs": _get(config, "trainer", "max_epochs"),
        "batch_size": _get(config, "data", "batch_size"),
        "lr": _get(config, "model", "optimizer", "init_args", "lr"),
        "mixup": _get(config, "model", "mixup_alpha"),
        "augment": augment_summary(_get(config, "data", "augment")) if _get(config, "data") else None,
        "callbacks": "+".join(callbacks) or "none",
        "distill": _teachers(_get(config, "model", "teachers")),
        "precision": _get(config, "trainer", "precision"),
        "seed": _get(config, "seed_everything"),
        "train_clips": train_clips(dataset, config),
    }
    return {k: v for k, v in hp.items() if v is not None}


def write_session(writer: SummaryWriter, hparams: dict, metrics: dict[str, float], step: int = 0) -> None:
    """One HParams row in ``writer``'s run: session start (hyper-parameters), the metrics as
    scalars (the dashboard shows each one's last value), session end."""
    clean = {k: v for k, v in ((k, _hparam_value(v)) for k, v in hparams.items()) if v is not None}
    metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    _, start, end = hparams_summaries(clean, metrics)
    file_writer = writer._get_file_writer()
    file_writer.add_summary(start)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value, step)
    file_writer.add_summary(end)


def fold_metrics(run: dict) -> dict[str, float]:
    """``hp/accuracy_mean``, ``hp/accuracy_std``, ``hp/f1_mean`` and ``hp/fold<K>_accuracy`` of a ``runs`` entry.

    Named so they sort in that order: the dashboard shows the first five metrics by name at first.
    """
    metrics = {"hp/accuracy_mean": run["mean"]["accuracy"], "hp/accuracy_std": run["std"]["accuracy"],
               "hp/f1_mean": run["mean"].get("f1")}
    metrics.update({f"hp/fold{f['fold']}_accuracy": f["accuracy"] for f in run["folds"]})
    return metrics


def _clear_events(folder: Path) -> None:
    """Drop an older summary's event files, so one sweep stays one HParams row."""
    for old in folder.glob(f"{EVENTS}*"):
        old.unlink()


def write_sweep_summary(sweep_dir: Path, result: dict) -> Path:
    """Write ``<sweep_dir>/summary``: the sweep's HParams row (mean, spread, each fold), each fold's
    accuracy at step = fold, the summed confusion matrix and per-class accuracy as images."""
    from esc50_lightning.figures import confusion_figure, per_class_figure

    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "summary"
    out.mkdir(parents=True, exist_ok=True)
    _clear_events(out)
    run = result["runs"][0]
    kind = result.get("kind", "sweep")
    hp = {**run_hparams(result.get("config") or {}, result.get("dataset") or {}, kind), "folds": len(run["folds"])}
    writer = SummaryWriter(str(out))
    try:
        write_session(writer, hp, fold_metrics(run))
        for fold in run["folds"]:
            writer.add_scalar("summary/fold_accuracy", fold["accuracy"], fold["fold"])
        writer.add_text("summary/result", markdown_table(result["runs"]) + "\n\n" + _seconds_line(result))
        matrix, names = result.get("confusion_matrix"), result.get("class_names")
        if matrix is not None and names:
            title = f"{sweep_dir.name}: {len(run['folds'])} fold(s) summed"
            writer.add_figure("summary/confusion_matrix", confusion_figure(np.asarray(matrix), names, title))
            writer.add_figure("summary/per_class_accuracy", per_class_figure(np.asarray(matrix), names, title))
    finally:
        writer.close()
    return out


def _seconds_line(result: dict) -> str:
    seconds = result.get("total_train_seconds")
    return f"training time over the folds: {seconds} s" if seconds is not None else ""


def write_ensemble_summary(ensemble_dir: Path, result: dict) -> Path:
    """An ensemble's result has the sweep's shape (``runs``, ``confusion_matrix``, ...): same summary run."""
    return write_sweep_summary(ensemble_dir, {**result, "kind": "ensemble"})


def run_folder_name(name: str) -> str:
    """A classical row name as a folder name: ``log_mel|mean|svm|C=1.0|norm=True`` -> ``log_mel,mean,...``."""
    return re.sub(r"[^\w.=+,-]", "_", name.replace("|", ","))


def write_classical_summary(log_dir: Path, result: dict) -> Path:
    """One HParams row per classical grid row, each in ``<log_dir>/<row name>``; older row folders
    (folders holding only event files) are removed first, so the view is this grid's."""
    from esc50_lightning.classical.grid import parse_row_name

    log_dir = Path(log_dir)
    if log_dir.is_dir():
        for child in log_dir.iterdir():
            if child.is_dir() and all(f.name.startswith(EVENTS) for f in child.iterdir()):
                shutil.rmtree(child)
    config = result.get("config") or {}
    clips = (result.get("dataset") or {}).get("clips")
    for run in result["runs"]:
        hp = parse_row_name(run["name"])
        settings = {**config.get("data", {}), **config.get("features", {}).get(hp["representation"], {})}
        hp.update({"kind": "classical", "feature": settings.get("feature"), "n_mels": settings.get("n_mels"),
                   "hop": settings.get("hop_length"), "seed": config.get("seed"), "folds": len(run["folds"]),
                   "train_clips": clips - clips // 5 if clips else None})
        writer = SummaryWriter(str(log_dir / run_folder_name(run["name"])))
        try:
            write_session(writer, hp, fold_metrics(run))
            for fold in run["folds"]:
                writer.add_scalar("summary/fold_accuracy", fold["accuracy"], fold["fold"])
        finally:
            writer.close()
    return log_dir


class FoldHParams(Callback):
    """After testing, the fold's run gets its hyper-parameters (the sweep summary's names, plus
    ``fold``) with its test accuracy and F1 as metrics, in place of Lightning's placeholder
    ``hp_metric`` of -1 (use it with ``TensorBoardLogger(default_hp_metric=False)``). The accuracy
    is also ``hp/fold<K>_accuracy``: the column the sweep's summary row has for this fold."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        confusion = getattr(pl_module, "confusion", None)
        if confusion is not None:
            accuracy = counted_accuracy(confusion.tolist() if hasattr(confusion, "tolist") else confusion)
        else:
            accuracy = float(trainer.callback_metrics["test/acc"])  # the key AudioClassifier logs
        f1 = trainer.callback_metrics.get("test/f1")
        dm = trainer.datamodule
        dataset = {}
        if dm is not None and getattr(dm, "meta", None) is not None:
            dataset["clips"] = len(dm.meta)
        if dm is not None and "train" in (getattr(dm, "index", None) or {}):
            dataset["train_clips"] = len(dm.index["train"])
        fold = _get(self.config, "data", "fold")
        hp = {**run_hparams(self.config, dataset, "fold"), "fold": fold}
        metrics = {"hp/test_accuracy": accuracy, "hp/test_f1": None if f1 is None else float(f1),
                   f"hp/fold{fold}_accuracy": accuracy}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                write_session(logger.experiment, hp, metrics, trainer.global_step)
                logger.experiment.flush()
            else:
                logger.log_hyperparams(hp, {k: v for k, v in metrics.items() if v is not None})
