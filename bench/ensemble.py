"""Ensembles of finished runs of one fold, without retraining: is K shorter runs' mean better than
one long run for the same epochs?

Every checkpoint (trained with the same test fold and validation split) classifies the validation
split and the test fold once, through ``esc50_lightning.training.ensemble`` (the library behind
``esc50-lightning ensemble``); every subset is then scored by its members' mean class
probabilities. Each row lists the epochs its members cost together. Choose on the validation
split; the test fold only reports.

    ESC50_ROOT=/path/to/ESC-50 python bench/ensemble.py bench/sweeps/cnn_320/fold1 \\
        lightning_logs/bench/cnn/80ep/{wema,wema_freq_aware,wema_distill_cnn320}/fold1 --name ensemble_cnn_fold1

(a fold folder stands for the fold's checkpoint; a checkpoint file is taken as it is). With
``--folds``, every path names its fold as ``{fold}`` and each subset is scored on
each fold, then summarised over the test folds as a sweep's ``runs`` entry (mean and standard
deviation of accuracy, precision, recall and F1), with the validation splits' mean beside:

    ESC50_ROOT=/path/to/ESC-50 python bench/ensemble.py 'bench/sweeps/cnn_320/fold{fold}' \\
        'bench/sweeps/cnn_wide/fold{fold}' --folds 1 2 3 4 5 --name ensemble_cnn_320_wide
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write  # noqa: E402

from esc50_lightning.errors import ESC50Error  # noqa: E402
from esc50_lightning.results import METRICS, summarize_run  # noqa: E402
from esc50_lightning.training.checkpoints import read_checkpoint  # noqa: E402
from esc50_lightning.training.ensemble import held_out_probabilities, score  # noqa: E402
from esc50_lightning.training.sweep import FoldDir  # noqa: E402

PARTS = ("val", "test")


def part_scores(probs: dict, targets: dict) -> dict:
    """Accuracy and loss of each part; the test fold also gets the sweep's macro precision, recall and F1."""
    scores = {part: {"accuracy": score(probs[part], targets[part])["accuracy"],
                     "loss": F.nll_loss(probs[part].clamp_min(1e-12).log(), targets[part]).item()} for part in PARTS}
    test = score(probs["test"], targets["test"])
    scores["test"].update({m: test[m] for m in ("precision", "recall", "f1")})
    return scores


def ensemble_fold(checkpoints: list[Path]) -> dict:
    """Every subset of ``checkpoints`` (runs of one test fold and validation split, refused otherwise
    by ``training.ensemble``), scored; each network alone, without test-time shifts, as before."""
    held = {part: held_out_probabilities(checkpoints, part, tta_shifts=1, root=data_root()) for part in PARTS}
    targets = {part: held[part].targets for part in PARTS}
    epochs = [read_checkpoint(path)["epoch"] + 1 for path in checkpoints]
    fold = held["test"].fold
    rows = []
    for size in range(1, len(checkpoints) + 1):
        for members in itertools.combinations(range(len(checkpoints)), size):
            mean = {part: held[part].probs[list(members)].mean(0) for part in PARTS}
            rows.append({"members": [str(checkpoints[m]) for m in members],
                         "epochs": sum(epochs[m] for m in members), **part_scores(mean, targets)})
            names = " + ".join(Path(p).parts[-4] for p in rows[-1]["members"])
            print(f"fold {fold}, {len(members)} runs, {rows[-1]['epochs']:4d} epochs: "
                  f"val {rows[-1]['val']['accuracy']:.4f} (loss {rows[-1]['val']['loss']:.3f})  "
                  f"test {rows[-1]['test']['accuracy']:.4f}  {names}")
    return {"fold": fold, "val_clips": len(targets["val"]), "test_clips": len(targets["test"]), "rows": rows}


def runs_over_folds(folds: list[dict]) -> list[dict]:
    """Per subset (same order on every fold): a sweep's ``runs`` entry over the test folds
    (``summarize_run``: mean and std of each metric) and its validation accuracy and loss averaged."""
    summary = []
    for i, row in enumerate(folds[0]["rows"]):
        run = summarize_run(" + ".join(Path(p).parts[-4] for p in row["members"]),
                            [{"fold": fold["fold"], **{m: fold["rows"][i]["test"][m] for m in METRICS}}
                             for fold in folds])
        for key in ("accuracy", "loss"):
            run[f"val_{key}"] = statistics.fmean(fold["rows"][i]["val"][key] for fold in folds)
        summary.append(run)
        print(f"{run['name']}: val {run['val_accuracy']:.4f}  "
              f"test {run['mean']['accuracy']:.4f} ± {run['std']['accuracy']:.4f}  F1 {run['mean']['f1']:.4f}")
    return summary


def member(path: str) -> Path:
    """A fold folder's checkpoint, or the checkpoint file named."""
    return FoldDir.of(path).checkpoint if Path(path).is_dir() else Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="finished runs of one fold: fold folders (<sweep>/fold<K>) "
                                                       "or checkpoint files (with --folds: '{fold}' in each path)")
    parser.add_argument("--folds", type=int, nargs="+", help="test folds to score, averaged")
    parser.add_argument("--name", default="ensemble", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        sys.exit("an ensemble needs at least two checkpoints")
    if args.folds and (unnamed := [p for p in args.checkpoints if "{fold}" not in p]):
        sys.exit(f"with --folds every checkpoint path names its fold as {{fold}}: {', '.join(unnamed)}")
    per_fold = [[member(p.replace("{fold}", str(k))) for p in args.checkpoints] for k in args.folds or [None]]
    if missing := [str(p) for paths in per_fold for p in paths if not p.is_file()]:
        sys.exit(f"no such checkpoint: {', '.join(missing)}")
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    try:
        folds = [ensemble_fold(paths) for paths in per_fold]
    except ESC50Error as err:
        sys.exit(str(err))
    figures = {"folds": folds, "runs": runs_over_folds(folds)} if args.folds else folds[0]
    print(f"wrote {write(args.name, {**figures, 'seconds': round(time.perf_counter() - start, 1)})}")


if __name__ == "__main__":
    main()
