"""Fold ensembles of finished sweeps: for each fold, every sweep's model of that fold, averaged.

A sweep's fold-K model never saw fold K, so the mean class probabilities of several sweeps' fold-K
models on fold K's clips are a valid cross-validation estimate of their ensemble. Members must hold
out the same fold with the same validation split of the same data; anything else is refused in one
line, and all of it before any fold is scored (``check_ensemble``). With no folds named, an
ensemble scores the folds every member has finished (``choose_folds``). Each member reads the
clips through its own input pipeline (the checkpoint's front end and normaliser); clips are
decoded once per sample rate and features computed once per front end.
The result has a sweep's shape (``training.sweep.aggregate``): the ensemble's ``runs`` entry first,
then each member's, scored by the same code on the same clips.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from esc50_lightning.data.audio import decode_clips
from esc50_lightning.data.download import ensure_dataset
from esc50_lightning.data.meta import class_names, load_metadata
from esc50_lightning.data.splits import fold_split
from esc50_lightning.errors import ESC50Error
from esc50_lightning.models.distill import SPLIT_KEYS
from esc50_lightning.models.metrics import metric_collection
from esc50_lightning.models.waveform import EnsembleClassifier
from esc50_lightning.results import METRICS, counted_accuracy, summarize_run, write_results
from esc50_lightning.training.checkpoints import DATA_KEY, LoadedModel, load_checkpoint, read_checkpoint
from esc50_lightning.training.sweep import FoldDir

FOLDS = (1, 2, 3, 4, 5)

DATA_KEYS = (*SPLIT_KEYS, "allow_subset")  # what members must share: held-out clips, validation split, data


@dataclass
class HeldOut:
    """Members' class probabilities ``(members, clips, classes)`` on one fold's clips, and their labels."""

    probs: torch.Tensor
    targets: torch.Tensor
    fold: int
    class_names: list[str]
    dataset: dict


@dataclass
class MemberRecord:
    """What a checkpoint says about the clips it holds out, read without building its model."""

    data_settings: dict
    class_names: list[str]


def member_record(path: Path) -> MemberRecord:
    ckpt = read_checkpoint(path, mmap=True)
    return MemberRecord(dict(ckpt["datamodule_hyper_parameters"]), list(ckpt[DATA_KEY]["class_names"]))


def check_members(paths: list[Path], models: list[LoadedModel] | list[MemberRecord]) -> None:
    """One line naming the first setting two members differ in: their held-out fold, validation
    split, data, or classes."""
    first = models[0].data_settings
    for path, model in zip(paths[1:], models[1:]):
        for key in DATA_KEYS:
            if model.data_settings.get(key) != first.get(key):
                raise ESC50Error(f"{path} has data.{key}={model.data_settings.get(key)!r}, {paths[0]} "
                                 f"{first.get(key)!r}: ensemble members must hold out the same fold and "
                                 "validation split of the same data")
        if model.class_names != models[0].class_names:
            raise ESC50Error(f"{path} names other classes than {paths[0]}")
    if first.get("fold") == "all":
        raise ESC50Error(f"{paths[0]} was trained on every clip (data.fold all): it holds no fold out to score")


def clip_index(meta: pd.DataFrame, settings: dict, part: str) -> np.ndarray:
    """Positions in ``meta`` of ``part`` (``test``: the held-out fold; ``val``: the validation split),
    cut as the DataModule cut them for the checkpoint's own settings."""
    return fold_split(meta, settings["fold"], settings.get("val_strategy", "grouped"),
                      settings.get("val_fraction", 0.1), settings.get("seed", 0))[part]


def data_root(paths: list[Path], models: list[LoadedModel] | list[MemberRecord], root: str | Path | None) -> Path:
    """``root``, else the one root the members were trained on (``ESC50_ROOT`` when none was named)."""
    if root is None:
        named = {str(m.data_settings["root"]) for m in models if m.data_settings.get("root")}
        if len(named) > 1:
            raise ESC50Error(f"the members were trained on data at {' and '.join(sorted(named))}; pass --root "
                             "to score them on one (when both hold the same ESC-50)")
        root = named.pop() if named else None
    return ensure_dataset(root)


@torch.no_grad()
def held_out_probabilities(paths: list[Path], part: str = "test", tta_shifts: int | None = None,
                           root: str | Path | None = None, batch_size: int = 64,
                           device: torch.device | str | None = None) -> HeldOut:
    """Each checkpoint's class probabilities on ``part`` of the fold they all hold out, through its
    own input pipeline; ``tta_shifts`` overrides every member's own test-time shifts."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = [load_checkpoint(path) for path in paths]
    check_members(paths, models)
    settings = models[0].data_settings
    root = data_root(paths, models, root)
    # any tree passes here; a sweep's fold is checked against the clips its result counted (sweep_fold)
    meta = load_metadata(root, allow_subset=True)
    if class_names(meta) != models[0].class_names:
        raise ESC50Error(f"{root} names other classes than {paths[0]} was trained on")
    index = clip_index(meta, settings, part)
    files = [root / "audio" / name for name in meta["filename"].to_numpy()[index]]
    targets = torch.as_tensor(meta["target"].to_numpy()[index], dtype=torch.long)
    probs = torch.zeros(len(models), len(index), len(models[0].class_names))
    waves: dict[tuple[int, float], torch.Tensor] = {}  # each clip decoded once per rate and length
    groups: dict = {}  # members that read the same spectrogram share one front end
    for i, model in enumerate(models):
        groups.setdefault(model.module.pipeline.settings, []).append(i)
    for front, members in groups.items():
        key = (front.sample_rate, front.clip_seconds)
        if key not in waves:
            waves[key] = decode_clips(files, *key)
        ensemble = EnsembleClassifier([models[i].module for i in members]).to(device).eval()
        for start in range(0, len(index), batch_size):
            features = ensemble.frontend(waves[key][start:start + batch_size].to(device))
            probs[members, start:start + batch_size] = ensemble.member_probabilities(features, tta_shifts).cpu()
    rates = sorted({rate for rate, _ in waves})
    dataset = {"root": str(root), "clips": len(meta), "sample_rate": rates[0] if len(rates) == 1 else rates}
    return HeldOut(probs, targets, settings["fold"], models[0].class_names, dataset)


def score(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    """The sweep's fold metrics of ``(clips, classes)`` probabilities: accuracy counted from the
    confusion matrix (rows: true class), macro precision, recall and F1, and the matrix."""
    classes = probs.shape[1]
    confusion = torch.bincount(targets * classes + probs.argmax(1), minlength=classes * classes)
    confusion = confusion.reshape(classes, classes).tolist()
    metrics = metric_collection(classes, "")(probs, targets)
    return {"accuracy": counted_accuracy(confusion), **{m: float(metrics[m]) for m in METRICS[1:]},
            "confusion_matrix": confusion}


def member_names(sweep_dirs: list[Path]) -> list[str]:
    """Each sweep's folder name, or its whole path where two share a name."""
    names = [Path(d).resolve().name for d in sweep_dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, sweep_dirs)]


def missing_fold(fold_dir: FoldDir) -> str | None:
    """Why a sweep's fold cannot join an ensemble (its model, or its test, is missing), or ``None``."""
    if not fold_dir.checkpoint.is_file():
        return f"{fold_dir.checkpoint} missing"
    if fold_dir.result() is None:
        return f"not finished: no readable {fold_dir.result_file}"
    return None


def choose_folds(sweep_dirs: list[Path], folds: list[int] | None) -> tuple[list[int], str]:
    """``folds``, each of which every member must have finished (else one line names the first
    member and fold missing); or, with none named, the folds every member has finished, and a
    line that says so (and which folds only some members have)."""
    names = member_names(sweep_dirs)
    if folds is not None:
        for fold in folds:
            for name, sweep_dir in zip(names, sweep_dirs):
                if why := missing_fold(FoldDir(Path(sweep_dir), fold)):
                    raise ESC50Error(f"{name}: no fold {fold} model ({why}); finish that fold with sweep, or leave "
                                     "it out of --folds")
        return folds, ""
    has = {fold: [missing_fold(FoldDir(Path(d), fold)) is None for d in sweep_dirs] for fold in FOLDS}
    common = [fold for fold in FOLDS if all(has[fold])]
    if not common:
        held = "; ".join(f"{name}: {', '.join(str(f) for f in FOLDS if has[f][i]) or 'none'}"
                         for i, name in enumerate(names))
        raise ESC50Error(f"no fold is finished in every member (finished folds: {held}); finish the folds with sweep")
    notes = [f"{name}: fold {fold} {'not finished' if FoldDir(Path(d), fold).checkpoint.is_file() else 'missing'}"
             for fold in FOLDS if any(has[fold]) and not all(has[fold])
             for name, d, ok in zip(names, sweep_dirs, has[fold]) if not ok]
    what = f"folds {', '.join(map(str, common))}, the ones" if len(common) > 1 else f"fold {common[0]}, the one"
    return common, f"{what} every member has" + (f" ({'; '.join(notes)})" if notes else "")


def check_ensemble(sweep_dirs: list[Path], folds: list[int], root: str | Path | None) -> None:
    """Everything ``ensemble_sweeps`` would refuse part-way, refused before any fold is scored:
    each fold's members hold out that fold with the same split of the same data and classes
    (``check_members``, from their checkpoints' settings), and the data scored on has as many
    clips in each fold as the members' results tested."""
    paths, records = [], []
    for fold in folds:
        fold_paths = [FoldDir(Path(d), fold).checkpoint for d in sweep_dirs]
        fold_records = [member_record(path) for path in fold_paths]
        check_members(fold_paths, fold_records)
        if fold_records[0].data_settings.get("fold") != fold:
            raise ESC50Error(f"{fold_paths[0]} held out fold {fold_records[0].data_settings.get('fold')}, not fold "
                             f"{fold}")
        if paths and fold_records[0].class_names != records[0].class_names:
            raise ESC50Error(f"{fold_paths[0]} names other classes than {paths[0]}")
        paths += fold_paths
        records += fold_records
    data = data_root(paths, records, root)
    meta = load_metadata(data, allow_subset=True)
    if class_names(meta) != records[0].class_names:
        raise ESC50Error(f"{data} names other classes than {paths[0]} was trained on")
    for fold, record in zip(folds, records[::len(sweep_dirs)]):
        clips = len(clip_index(meta, record.data_settings, "test"))
        for sweep_dir in sweep_dirs:
            fold_dir = FoldDir(Path(sweep_dir), fold)
            tested = int(np.sum(fold_dir.result()["confusion_matrix"]))
            if tested != clips:
                raise ESC50Error(f"fold {fold} of {data} has {clips} clips, {fold_dir.result_file} tested {tested}: "
                                 "other data than the sweep's")


def sweep_fold(sweep_dirs: list[Path], fold: int, tta_shifts: int | None, root: str | Path | None) -> HeldOut:
    """Fold ``fold``'s test-clip probabilities of each sweep's fold model (checked by ``check_ensemble``)."""
    return held_out_probabilities([FoldDir(Path(d), fold).checkpoint for d in sweep_dirs], "test", tta_shifts, root)


def ensemble_sweeps(name: str, sweep_dirs: list[str | Path], folds: list[int] | None,
                    results_file: str | Path | None = None, tta_shifts: int | None = None,
                    root: str | Path | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[dict, str, list[Path]]:
    """Score the fold ensembles of ``sweep_dirs`` on ``folds`` (``None``: those every member has
    finished) and write the result (JSON and a markdown table) to
    ``lightning_logs/ensembles/<name>/results.json`` and ``results_file``; return the result, the
    table and the files written. Whatever cannot be combined is refused before the first fold is
    scored (``choose_folds``, ``check_ensemble``)."""
    start = time.perf_counter()
    folds, _ = choose_folds([Path(d) for d in sweep_dirs], folds)
    check_ensemble([Path(d) for d in sweep_dirs], folds, root)
    names = member_names([Path(d) for d in sweep_dirs])
    rows: list[dict] = []
    member_rows: list[list[dict]] = [[] for _ in sweep_dirs]
    confusion = 0
    for fold in folds:
        held = sweep_fold([Path(d) for d in sweep_dirs], fold, tta_shifts, root)
        row = score(held.probs.mean(0), held.targets)
        confusion = confusion + np.asarray(row.pop("confusion_matrix"))
        rows.append({"fold": fold, **row})
        for i in range(len(sweep_dirs)):
            member_rows[i].append({"fold": fold, **score(held.probs[i], held.targets)})
            member_rows[i][-1].pop("confusion_matrix")
        if progress:
            members = ", ".join(f"{n} {r[-1]['accuracy']:.4f}" for n, r in zip(names, member_rows))
            progress(f"ensemble {name}: fold {fold}: {row['accuracy']:.4f} ({members})")
    runs = [summarize_run(name, rows), *(summarize_run(n, r) for n, r in zip(names, member_rows))]
    results = [FoldDir(Path(d), f).result() for d in sweep_dirs for f in folds]
    config = {"members": [str(d) for d in sweep_dirs], "folds": list(folds), "tta_shifts": tta_shifts,
              "member_configs": [FoldDir(Path(d), folds[0]).trained_config() for d in sweep_dirs]}
    extra = {"class_names": held.class_names, "confusion_matrix": confusion.tolist(),
             "eval_seconds": round(time.perf_counter() - start, 1)}
    if all(r is not None and "train_seconds" in r for r in results):
        extra["total_train_seconds"] = round(sum(r["train_seconds"] for r in results), 1)  # every member's folds
    dataset, trained = dict(held.dataset), {(r or {}).get("dataset", {}).get("train_clips") for r in results}
    if len(trained) == 1 and None not in trained:
        dataset["train_clips"] = trained.pop()  # what every member trained on
    targets = [ensemble_dir(name) / "results.json"] + ([Path(results_file)] if results_file else [])
    for target in dict.fromkeys(targets):
        table = write_results(target, "ensemble", config, dataset, runs, extra)
    result = {"kind": "ensemble", "config": config, "dataset": dataset, "runs": runs, **extra}
    return result, table, targets


def ensemble_dir(name: str) -> Path:
    """Where an ensemble's result and TensorBoard summary live, beside the sweeps'."""
    return Path("lightning_logs") / "ensembles" / name
