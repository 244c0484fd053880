"""Epoch times of a finished run, read back from its TensorBoard events (the wall-clock gaps
between consecutive ``val/acc`` points): how the README's per-fold "s an epoch" figures are made.

    python bench/epoch_times.py bench/sweeps/cnn_320/fold1 bench/sweeps/cnn_320/fold2 --beside 50

A gap longer than ``--beside`` seconds is counted apart (an epoch that shared the CPU with something
else, e.g. the test suite); gaps across event files (a stop and a resume) are not epochs and are skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def epoch_gaps(run_dir: Path, tag: str = "val/acc") -> np.ndarray:
    """Seconds between consecutive ``tag`` events, within each event file of ``run_dir``."""
    gaps = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        if tag in events.Tags()["scalars"]:
            times = np.array([e.wall_time for e in events.Scalars(tag)])
            gaps.append(np.diff(times))
    return np.concatenate(gaps) if gaps else np.array([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders holding event files")
    parser.add_argument("--beside", type=float, default=50.0, help="gaps above this are counted apart (s)")
    args = parser.parse_args()
    for run in args.runs:
        gaps = epoch_gaps(run)
        alone, beside = gaps[gaps <= args.beside], gaps[gaps > args.beside]
        if not len(alone):
            print(f"{run}: no consecutive val/acc events")
            continue
        print(f"{run}: {len(gaps)} epoch gaps; alone {alone.min():.1f}-{alone.max():.1f} s "
              f"(median {np.median(alone):.1f}); {len(beside)} over {args.beside:g} s"
              + (f" ({beside.min():.1f}-{beside.max():.1f} s)" if len(beside) else ""))


if __name__ == "__main__":
    main()
