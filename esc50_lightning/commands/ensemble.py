"""``esc50-lightning ensemble SWEEP_DIR SWEEP_DIR [...]``: several sweeps' fold models, averaged fold by fold.

For each fold, every sweep's model of that fold (none of them saw it) classifies the fold's test
clips; their class probabilities are averaged. The result is a sweep's (mean and std over folds of
accuracy, macro precision, recall and F1; the summed confusion matrix), with each member scored on
the same clips beside it, in ``lightning_logs/ensembles/<name>/results.json`` (and ``--results``)
and a TensorBoard summary run in ``lightning_logs/ensembles/<name>/summary``. Without ``--folds``
it scores the folds every member has finished, and says which. What cannot be combined (a fold a
member has not finished; sweeps that hold out other folds, validation splits or data) is refused
before any fold is scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jsonargparse import ArgumentParser

from esc50_lightning.commands import command_parser
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.ensemble import choose_folds, ensemble_dir, ensemble_sweeps
from esc50_lightning.training.summary import write_ensemble_summary


def build_parser() -> ArgumentParser:
    parser = command_parser("ensemble", __doc__)
    # SUPPRESS: absent from the command line, a config file's sweep_dirs stay
    parser.add_argument("sweep_dirs", nargs="*", default=argparse.SUPPRESS, metavar="SWEEP_DIR",
                        help="finished sweeps (their fold<K> folders); two or more")
    parser.add_argument("--folds", type=int, nargs="+", default=None,
                        help="default: the folds every member has finished")
    parser.add_argument("--results", type=str | None, default=None, help="also write the result JSON (and .md) here")
    parser.add_argument("--tta_shifts", type=int, default=None,
                        help="average each member over K circular time shifts (default: each member's own)")
    parser.add_argument("--name", type=str | None, default=None, help="default: the sweeps' folder names joined by +")
    parser.add_argument("--root", type=str | None, default=None,
                        help="the ESC-50 root to score on (default: the one the sweeps were trained on)")
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    sweep_dirs = list(getattr(args, "sweep_dirs", None) or [])
    if len(sweep_dirs) < 2:
        raise ESC50Error("an ensemble needs at least two sweep folders")
    if args.folds is not None and (bad := [f for f in args.folds if f not in range(1, 6)]):
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    if args.tta_shifts is not None and args.tta_shifts < 1:
        raise ESC50Error(f"--tta_shifts must be at least 1, got {args.tta_shifts}")
    if missing := [d for d in sweep_dirs if not Path(d).is_dir()]:
        raise ESC50Error(f"no such sweep folder: {', '.join(missing)}")
    name = args.name or "+".join(Path(d).resolve().name for d in sweep_dirs)
    folds, chosen = choose_folds([Path(d) for d in sweep_dirs], sorted(set(args.folds)) if args.folds else None)
    if chosen:
        print(f"ensemble {name}: {chosen}")
    result, table, targets = ensemble_sweeps(name, sweep_dirs, folds, args.results, args.tta_shifts, args.root,
                                             progress=print)
    summary = write_ensemble_summary(ensemble_dir(name), result)
    print(table)
    print(f"ensemble {name}: results in {', '.join(map(str, targets))}; TensorBoard summary in {summary}")
