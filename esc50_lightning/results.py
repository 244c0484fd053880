"""Result files shared by ``sweep`` and ``classical``: the JSON of DESIGN.md and a markdown table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esc50_lightning.atomic import write_json_atomic, write_text_atomic

METRICS = ("accuracy", "precision", "recall", "f1")


def counted_accuracy(confusion: list[list[int]]) -> float:
    """Accuracy as correct / total from the confusion matrix's counts: exact, where torchmetrics'
    float32 value of 800/2000 reads 0.39999999."""
    counts = np.asarray(confusion)
    return float(np.trace(counts) / counts.sum())


def summarize_run(name: str, folds: list[dict]) -> dict:
    """One ``runs`` entry: per-fold rows plus mean and standard deviation (ddof=1) over folds."""
    table = np.array([[f[m] for m in METRICS] for f in folds], dtype=float)
    std = table.std(0, ddof=1) if len(folds) > 1 else np.zeros(len(METRICS))
    return {
        "name": name,
        "folds": folds,
        "mean": dict(zip(METRICS, map(float, table.mean(0)))),
        "std": dict(zip(METRICS, map(float, std))),
    }


def markdown_table(runs: list[dict], sort: bool = True, first: list[dict] = ()) -> str:
    """Mean ± std of each metric per run, best accuracy first when ``sort``; ``first`` rows above them
    as given (a classical grid's row chosen on validation).

    Four decimals: a 2,000-clip accuracy moves in steps of 0.0005, so three would round it.
    """
    rows = [*first, *(sorted(runs, key=lambda r: -r["mean"]["accuracy"]) if sort else runs)]
    lines = [
        "| run | folds | accuracy | precision | recall | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r['mean'][m]:.4f} ± {r['std'][m]:.4f}" for m in METRICS)
        name = r["name"].replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| `{name}` | {len(r['folds'])} | {cells} |")
    return "\n".join(lines) + "\n"


def write_results(path: str | Path, kind: str, config: dict, dataset: dict, runs: list[dict],
                  extra: dict | None = None, first: list[dict] = ()) -> str:
    """Write ``path`` (JSON) and ``path`` with ``.md`` (the table, ``first`` rows on top); return the table."""
    path = Path(path)
    write_json_atomic(path, {"kind": kind, "config": config, "dataset": dataset, "runs": runs, **(extra or {})})
    table = markdown_table(runs, first=first)
    write_text_atomic(path.with_suffix(".md"), table)
    return table
