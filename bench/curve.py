"""Accuracy against training time on one fold: one run per epoch budget (each with its own full
cosine schedule), validation accuracy per epoch and final test accuracy. The evidence for a
config's number of epochs. Each budget is a one-fold ``sweep``: an interruption resumes.

    ESC50_ROOT=/path/to/ESC-50 python bench/curve.py --config configs/cnn.yaml --budgets 20 40 80
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, one_fold_run, write  # noqa: E402

from esc50_lightning.figures.curves import read_scalars  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cnn.yaml")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 40, 80])
    args = parser.parse_args()
    data_root()
    name = Path(args.config).stem
    rows = []
    for epochs in args.budgets:
        fold_dir = one_fold_run(args.config, args.fold, epochs)
        result = fold_dir.result()
        val = read_scalars(fold_dir.path).get("val/acc")
        rows.append({"epochs": epochs, "train_seconds": result["train_seconds"], "test_accuracy": result["accuracy"],
                     "val_accuracy_final": float(val[-1]), "val_accuracy_per_epoch": [round(float(v), 4) for v in val]})
        print(f"{epochs:4d} epochs  {result['train_seconds']:8.0f} s  val {val[-1]:.3f}  test {result['accuracy']:.3f}")
    print(f"wrote {write(f'{name}_curve', {'config': args.config, 'fold': args.fold, 'rows': rows})}")


if __name__ == "__main__":
    main()
