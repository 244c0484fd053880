"""The 50 x 50 confusion matrix with class names, per-class accuracy and the worst pairs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def most_confused(matrix: np.ndarray, names: list[str], k: int = 10) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as ``(true, predicted, count)``."""
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    rows, cols = np.unravel_index(order, off.shape)
    return [(names[r], names[c], int(matrix[r, c])) for r, c in zip(rows, cols) if matrix[r, c] > 0]


def confusion_figure(matrix: np.ndarray, names: list[str], title: str = "Confusion matrix") -> Figure:
    """Row-normalised confusion matrix, per-class accuracy bars, and the most-confused pairs."""
    matrix = np.asarray(matrix)
    n = len(names)
    support = matrix.sum(1, keepdims=True).clip(min=1)
    recall = np.diag(matrix) / support[:, 0]
    fig = plt.figure(figsize=(17, 13), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[4, 1], height_ratios=[5, 1])
    ax = fig.add_subplot(grid[0, 0])
    im = ax.imshow(matrix / support, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {acc:.4f}, {int(matrix.sum())} clips)")
    fig.colorbar(im, ax=ax, shrink=0.6, label="fraction of the true class")
    bars = fig.add_subplot(grid[0, 1])
    bars.barh(range(n), recall, color="tab:blue")
    bars.set_yticks(range(n), names, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.set_xlabel("per-class accuracy (recall)")
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    pairs = most_confused(matrix, names, 10)
    lines = [f"{t} -> {p}: {c}" for t, p, c in pairs] or ["no confusions"]
    text.text(0, 1, "Most confused (true -> predicted: clips)\n" + "\n".join(
        "    ".join(lines[i : i + 2]) for i in range(0, len(lines), 2)), va="top", family="monospace",
        fontsize=9)
    return fig


def per_class_figure(matrix: np.ndarray, names: list[str], title: str = "Per-class accuracy") -> Figure:
    """Each class's accuracy (recall) from a confusion matrix, worst first: where a recipe loses clips."""
    matrix = np.asarray(matrix)
    recall = np.diag(matrix) / matrix.sum(1).clip(min=1)
    order = np.argsort(recall, kind="stable")
    fig, ax = plt.subplots(figsize=(7, 0.16 * len(names) + 1.2), layout="constrained")
    ax.barh(range(len(names)), recall[order], color=plt.cm.viridis(recall[order]))
    ax.set_yticks(range(len(names)), [names[i] for i in order], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    mean = float(recall.mean()) if len(recall) else 0.0
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.4f}")
    ax.set_xlabel("accuracy (recall) of the class")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig
