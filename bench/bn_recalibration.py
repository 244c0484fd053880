"""BatchNorm statistics re-estimated on clean training clips, on finished sweep folds, without retraining.

A network trained with mixup, SpecAugment and random gains keeps running BatchNorm statistics of
those augmented batches; ``WarmupEMA(recalibrate_bn=True)`` re-estimates them on the unaugmented
training clips for its averaged weights. This asks whether the same pays for the raw weights of a
recipe without averaging (the flagship): each fold's checkpoint is evaluated as saved and
re-estimated (``bench/common.py: weights_accuracies``, fp32), on its validation split and its test
fold. Chosen on the mean over the folds' validation splits; the test folds only report.

    ESC50_ROOT=/path/to/ESC-50 python bench/bn_recalibration.py bench/sweeps/cnn_320/fold{1,2,3,4,5} \\
        --name bn_recalibration_cnn_320
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fold_folder, weights_accuracies, write  # noqa: E402

WEIGHTS = ("raw", "raw_bn_recomputed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fold_dirs", nargs="+", type=fold_folder, help="finished sweep folds: <sweep>/fold<K>")
    parser.add_argument("--name", default="bn_recalibration", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    start = time.perf_counter()
    folds = []
    for fold_dir in args.fold_dirs:
        result = fold_dir.result()
        weights = weights_accuracies(fold_dir)
        folds.append({"fold_dir": str(fold_dir.path), "fold": result["fold"], "sweep_test_accuracy": result["accuracy"],
                      **{name: weights[name] for name in WEIGHTS}})
        print(json.dumps(folds[-1]))
    mean = {name: {part: sum(f[name][f"{part}_accuracy"] for f in folds) / len(folds) for part in ("val", "test")}
            for name in WEIGHTS}
    chosen = max(WEIGHTS, key=lambda name: mean[name]["val"])  # ties keep the weights as saved
    figures = {"chosen_on_mean_validation": chosen, "mean_over_folds": mean, "folds": folds,
               "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({"chosen": chosen, "mean_over_folds": mean}, indent=2))
    print(f"wrote {write(args.name, figures)}")


if __name__ == "__main__":
    main()
