"""Classify every clip of a sweep fold's test fold through ``esc50-lightning classify`` (files in,
class names out) and compare the accuracy with the one the sweep reported for that fold.

    ESC50_ROOT=/path/to/ESC-50 python bench/classify_fold.py lightning_logs/sweeps/conv1d/fold1
    ESC50_ROOT=/path/to/ESC-50 python bench/classify_fold.py lightning_logs/sweeps/cnn/fold1 --name classify_fold_cnn
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, fold_folder, write  # noqa: E402

from esc50_lightning.cli import main as cli_main  # noqa: E402
from esc50_lightning.data.meta import load_metadata  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fold_dir", type=fold_folder, help="a finished sweep fold: <sweep>/fold<K>")
    parser.add_argument("--name", default="classify_fold", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    fold_dir = args.fold_dir
    reported = fold_dir.result()
    root = data_root()
    meta = load_metadata(root)
    test = meta[meta["fold"] == reported["fold"]]
    files = [str(root / "audio" / f) for f in test["filename"]]
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli_main(["classify", "--ckpt", str(fold_dir.checkpoint), *files, "--json", "--top-k", "1"])
    seconds = time.perf_counter() - start
    predicted = [r["top"][0]["class"] for r in json.loads(out.getvalue())["results"]]
    accuracy = sum(p == t for p, t in zip(predicted, test["category"])) / len(test)
    figures = {"fold_dir": str(fold_dir.path), "fold": reported["fold"], "clips": len(files),
               "classify_accuracy": accuracy, "sweep_accuracy": reported["accuracy"],
               "difference": accuracy - reported["accuracy"], "classify_seconds": round(seconds, 2)}
    print(json.dumps(figures, indent=2))
    print(f"wrote {write(args.name, figures)}")


if __name__ == "__main__":
    main()
