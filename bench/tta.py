"""Test-time shift averaging (``--model.tta_shifts``) on finished sweep folds, without retraining.

Each fold's checkpoint (the weights its sweep tested) classifies its validation split and its
test fold with the class probabilities averaged over K evenly spaced circular time shifts, for
each K of ``--shifts`` (``esc50_lightning.training.ensemble``, the library behind
``esc50-lightning ensemble --tta_shifts K``). K is chosen on fold 1's validation split (accuracy,
then loss); the test folds only report.

    ESC50_ROOT=/path/to/ESC-50 python bench/tta.py lightning_logs/sweeps/cnn_fast/fold{1,2,3,4,5} \\
        --name tta_cnn_fast
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, fold_folder, write  # noqa: E402

from esc50_lightning.errors import ESC50Error  # noqa: E402
from esc50_lightning.training.checkpoints import read_checkpoint  # noqa: E402
from esc50_lightning.training.ensemble import held_out_probabilities, score  # noqa: E402
from esc50_lightning.training.sweep import FoldDir  # noqa: E402


@torch.no_grad()
def evaluate(fold_dir: FoldDir, shifts: list[int]) -> dict:
    """Accuracy and loss of the fold's validation split and test fold at each K of ``shifts``,
    through ``training.ensemble.held_out_probabilities`` (``esc50-lightning ensemble --tta_shifts``)."""
    out: dict = {"fold_dir": str(fold_dir.path), "fold": fold_dir.fold,
                 "epoch": read_checkpoint(fold_dir.checkpoint)["epoch"]}
    for part in ("val", "test"):
        for k in shifts:
            held = held_out_probabilities([fold_dir.checkpoint], part, tta_shifts=k, root=data_root())
            mean, targets = held.probs[0], held.targets
            out.setdefault(f"K={k}", {})[part] = {
                "accuracy": score(mean, targets)["accuracy"],
                "loss": F.nll_loss(mean.clamp_min(1e-12).log(), targets).item(), "clips": len(targets)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fold_dirs", nargs="+", type=fold_folder, help="finished sweep folds: <sweep>/fold<K>")
    parser.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--name", default="tta", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    if min(args.shifts) < 1:
        sys.exit(f"every --shifts value must be at least 1, got {args.shifts}")
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    folds = []
    for fold_dir in args.fold_dirs:
        try:
            folds.append(evaluate(fold_dir, args.shifts))
        except ESC50Error as err:
            sys.exit(str(err))
        reported = fold_dir.result()["accuracy"]
        folds[-1]["sweep_test_accuracy"] = reported
        print(json.dumps(folds[-1]))
    chooser = next((f for f in folds if f["fold"] == 1), None)
    chosen = None
    if chooser is not None:
        val = {k: chooser[f"K={k}"]["val"] for k in args.shifts}
        chosen = min(args.shifts, key=lambda k: (-val[k]["accuracy"], val[k]["loss"]))
    summary = {f"K={k}": {part: sum(f[f"K={k}"][part]["accuracy"] for f in folds) / len(folds)
                          for part in ("val", "test")} for k in args.shifts}
    figures = {"shifts": args.shifts, "chosen_on_fold1_validation": chosen, "mean_over_folds": summary,
               "folds": folds, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({"chosen": chosen, "mean_over_folds": summary}, indent=2))
    print(f"wrote {write(args.name, figures)}")


if __name__ == "__main__":
    main()
