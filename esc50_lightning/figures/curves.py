"""Training curves read back from TensorBoard event files (a run, or a sweep's folds)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CURVES = {"loss": ("train/loss", "val/loss"), "accuracy": ("train/acc", "val/acc")}


def read_scalars(run_dir: Path) -> dict[str, np.ndarray]:
    """Every scalar tag of one run directory as an array of values in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: np.array([e.value for e in acc.Scalars(tag)]) for tag in acc.Tags()["scalars"]}


def find_runs(path: Path) -> list[Path]:
    """``path`` itself if it holds event files, else its sub-folders that do (sweep folds)."""
    if list(path.glob("events.out.tfevents.*")):
        return [path]
    return sorted(p.parent for p in path.glob("*/events.out.tfevents.*"))


def curves_figure(path: Path, title: str | None = None) -> Figure:
    """Train and validation loss and accuracy per epoch: thin lines per fold, bold the mean."""
    runs = find_runs(path)
    if not runs:
        raise FileNotFoundError(f"{path}: no TensorBoard event files here or one folder down")
    scalars = {run.name: read_scalars(run) for run in runs}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3), layout="constrained")
    for ax, (label, tags) in zip(axes, CURVES.items()):
        for tag, color in zip(tags, ("tab:blue", "tab:orange")):
            series = [s[tag] for s in scalars.values() if tag in s]
            if not series:
                continue
            for values in series:
                ax.plot(np.arange(1, len(values) + 1), values, color=color, alpha=0.25, lw=0.8)
            n = min(map(len, series))
            mean = np.mean([v[:n] for v in series], axis=0)
            what = "mean of " + str(len(series)) + " folds" if len(series) > 1 else runs[0].name
            ax.plot(np.arange(1, n + 1), mean, color=color, lw=2, label=f"{tag} ({what})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Training curves: {path}")
    return fig
