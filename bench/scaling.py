"""Scaling out on one machine, side by side in one run: a config's 5-fold sweep one fold after
another, with ``--jobs N`` local processes, and with ``--executor ray`` (a local Ray cluster);
then one fold's ``fit`` with DDP on 2 processes against 1. Wall-clock seconds of each whole
command, including process start-up; every variant starts from an empty sweep folder.

    ESC50_ROOT=/path/to/ESC-50 python bench/scaling.py --config configs/conv1d.yaml --epochs 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write  # noqa: E402

VARIANTS = {
    "sequential": ["--folds", "1", "2", "3", "4", "5"],
    "jobs2": ["--folds", "1", "2", "3", "4", "5", "--jobs", "2"],
    "ray": ["--folds", "1", "2", "3", "4", "5", "--executor", "ray"],
    "one_fold_1_process": ["--folds", "1", "--trainer.accelerator=cpu", "--trainer.devices=1"],
    "one_fold_ddp_2_processes": ["--folds", "1", "--trainer.accelerator=cpu", "--trainer.devices=2",
                                 "--trainer.strategy=ddp"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/conv1d.yaml")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    data_root()
    name = Path(args.config).stem
    rows = []
    for variant in args.variants:
        sweep_dir = Path("lightning_logs") / "bench" / "scaling" / name / f"{args.epochs}ep" / variant
        shutil.rmtree(sweep_dir, ignore_errors=True)
        command = [sys.executable, "-m", "esc50_lightning", "sweep", f"--config={args.config}",
                   f"--trainer.max_epochs={args.epochs}", "--trainer.enable_progress_bar=false",
                   f"--sweep_dir={sweep_dir}", *VARIANTS[variant]]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        result = json.loads((sweep_dir / "results.json").read_text())
        run = result["runs"][0]
        rows.append({"variant": variant, "command": " ".join(command[1:]), "wall_seconds": round(seconds, 1),
                     "folds": [f["fold"] for f in run["folds"]], "mean_accuracy": run["mean"]["accuracy"],
                     "fold_accuracies": [f["accuracy"] for f in run["folds"]],
                     "train_seconds": [f["train_seconds"] for f in run["folds"]]})
        print(f"{variant:26s} {seconds:8.1f} s  accuracy {run['mean']['accuracy']:.4f}")
    figures = {"config": args.config, "epochs": args.epochs, "rows": rows}
    print(f"wrote {write(f'scaling_{name}', figures)}")


if __name__ == "__main__":
    main()
