"""Ensembles of finished runs of one fold, without retraining: is K shorter runs' mean better than
one long run for the same epochs?

Every checkpoint (trained with the same test fold and validation split) classifies the validation
split and the test fold once; every subset of two or more is then scored by its members' mean
class probabilities. Each row lists the epochs its members cost together. Choose on the
validation split; the test fold only reports.

    ESC50_ROOT=/tmp/ESC-50-16k python bench/ensemble.py \\
        bench/sweeps/cnn_320/fold1/checkpoints/last.ckpt \\
        lightning_logs/bench/cnn/80ep/{wema,wema_freq_aware,wema_distill_cnn320}/fold1/checkpoints/last.ckpt \\
        --name ensemble_cnn_fold1

With ``--folds``, every checkpoint path names its fold as ``{fold}`` and each subset is scored on
each fold, then summarised over the test folds as a sweep's ``runs`` entry (mean and standard
deviation of accuracy, precision, recall and F1), with the validation splits' mean beside:

    ESC50_ROOT=/tmp/ESC-50-16k python bench/ensemble.py \\
        'bench/sweeps/cnn_320/fold{fold}/checkpoints/last.ckpt' \\
        'bench/sweeps/cnn_wide/fold{fold}/checkpoints/last.ckpt' --folds 1 2 3 4 5 --name ensemble_cnn_320_wide
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
from common import load_fold_model, write  # noqa: E402

from esc50_lightning.models.classifier import metric_collection  # noqa: E402
from esc50_lightning.results import METRICS, summarize_run  # noqa: E402

PARTS = ("val", "test")


@torch.no_grad()
def probabilities(ckpt_path: Path, cache: dict, batch: int = 64) -> tuple[dict, dict]:
    """The checkpoint's class probabilities ``{part: (clips, classes)}`` and facts about the run."""
    model, data, epoch = load_fold_model(ckpt_path, cache)
    probs, targets = {}, {}
    for part in PARTS:
        index = torch.as_tensor(data.index[part])
        targets[part] = data.targets[index]
        probs[part] = torch.cat([model.net(data.model_inputs(data.inputs[index[i:i + batch]])).float().softmax(-1)
                                 for i in range(0, len(index), batch)])
    run = {"checkpoint": str(ckpt_path), "fold": data.fold, "epochs": epoch + 1,
           "val_clips": [int(i) for i in data.index["val"]]}
    return probs, {**run, "targets": targets}


def score(probs: dict, targets: dict) -> dict:
    """Accuracy and loss of each part; the test fold also gets the sweep's macro precision, recall and F1."""
    scores = {part: {"accuracy": (probs[part].argmax(1) == targets[part]).float().mean().item(),
                     "loss": F.nll_loss(probs[part].clamp_min(1e-12).log(), targets[part]).item()} for part in PARTS}
    test = metric_collection(probs["test"].shape[1], prefix="")(probs["test"], targets["test"])
    scores["test"].update({m: test[m].item() for m in ("precision", "recall", "f1")})
    return scores


def ensemble_fold(checkpoints: list[Path]) -> dict:
    """Every subset of ``checkpoints`` (runs of one test fold and validation split), scored."""
    cache: dict = {}  # one datamodule per feature setting, dropped with the fold
    runs = [probabilities(path, cache) for path in checkpoints]
    first = runs[0][1]
    for _, run in runs[1:]:
        if (run["fold"], run["val_clips"]) != (first["fold"], first["val_clips"]):
            sys.exit(f"{run['checkpoint']}: another test fold or validation split than {first['checkpoint']}")
    targets = first["targets"]
    rows = []
    for size in range(1, len(runs) + 1):
        for members in itertools.combinations(range(len(runs)), size):
            mean = {part: torch.stack([runs[m][0][part] for m in members]).mean(0) for part in PARTS}
            rows.append({"members": [str(checkpoints[m]) for m in members],
                         "epochs": sum(runs[m][1]["epochs"] for m in members), **score(mean, targets)})
            names = " + ".join(Path(p).parts[-4] for p in rows[-1]["members"])
            print(f"fold {first['fold']}, {len(members)} runs, {rows[-1]['epochs']:4d} epochs: "
                  f"val {rows[-1]['val']['accuracy']:.4f} (loss {rows[-1]['val']['loss']:.3f})  "
                  f"test {rows[-1]['test']['accuracy']:.4f}  {names}")
    return {"fold": first["fold"], "val_clips": len(first["val_clips"]), "test_clips": len(targets["test"]),
            "rows": rows}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="finished runs' last.ckpt, all of one fold "
                                                       "(with --folds: '{fold}' in each path)")
    parser.add_argument("--folds", type=int, nargs="+", help="test folds to score, averaged")
    parser.add_argument("--name", default="ensemble", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        sys.exit("an ensemble needs at least two checkpoints")
    if args.folds and (unnamed := [p for p in args.checkpoints if "{fold}" not in p]):
        sys.exit(f"with --folds every checkpoint path names its fold as {{fold}}: {', '.join(unnamed)}")
    per_fold = [[Path(p.replace("{fold}", str(k))) for p in args.checkpoints] for k in args.folds or [None]]
    if missing := [str(p) for paths in per_fold for p in paths if not p.is_file()]:
        sys.exit(f"no such checkpoint: {', '.join(missing)}")
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    folds = [ensemble_fold(paths) for paths in per_fold]
    figures = {"folds": folds, "runs": runs_over_folds(folds)} if args.folds else folds[0]
    print(f"wrote {write(args.name, {**figures, 'seconds': round(time.perf_counter() - start, 1)})}")


if __name__ == "__main__":
    main()
