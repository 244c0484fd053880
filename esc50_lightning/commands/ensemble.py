"""``esc50-lightning ensemble SWEEP_DIR SWEEP_DIR [...]``: several sweeps' fold models, averaged fold by fold.

For each fold, every sweep's model of that fold (none of them saw it) classifies the fold's test
clips; their class probabilities are averaged. The result is a sweep's (mean and std over folds of
accuracy, macro precision, recall and F1; the summed confusion matrix), with each member scored on
the same clips beside it, in ``lightning_logs/ensembles/<name>/results.json`` (and ``--results``)
and a TensorBoard summary run in ``lightning_logs/ensembles/<name>/summary``. Sweeps that hold out
other folds, validation splits or data are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.ensemble import ensemble_dir, ensemble_sweeps
from esc50_lightning.training.summary import write_ensemble_summary


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="esc50-lightning ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="finished sweeps (their fold<K> folders)")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--results", help="also write the result JSON (and .md) here")
    parser.add_argument("--tta_shifts", type=int,
                        help="average each member over K circular time shifts (default: each member's own)")
    parser.add_argument("--name", help="default: the sweeps' folder names joined by +")
    parser.add_argument("--root", help="the ESC-50 root to score on (default: the one the sweeps were trained on)")
    args = parser.parse_args(argv)
    if len(args.sweep_dirs) < 2:
        raise ESC50Error("an ensemble needs at least two sweep folders")
    if bad := [f for f in args.folds if f not in range(1, 6)]:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if args.tta_shifts is not None and args.tta_shifts < 1:
        raise ESC50Error(f"--tta_shifts must be at least 1, got {args.tta_shifts}")
    if missing := [d for d in args.sweep_dirs if not Path(d).is_dir()]:
        raise ESC50Error(f"no such sweep folder: {', '.join(missing)}")
    name = args.name or "+".join(Path(d).resolve().name for d in args.sweep_dirs)
    folds = sorted(set(args.folds))
    result, table, targets = ensemble_sweeps(name, args.sweep_dirs, folds, args.results, args.tta_shifts,
                                             args.root, progress=print)
    summary = write_ensemble_summary(ensemble_dir(name), result)
    print(table)
    print(f"ensemble {name}: results in {', '.join(map(str, targets))}; TensorBoard summary in {summary}")
