"""Accuracy against training hours: one point per sweep, so a user can pick a budget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator  # noqa: E402

MARKERS = {"GPU": "s", "CPU, native bf16": "o", "CPU, bf16 emulated": "^", "machine not recorded": "x"}


def hardware_kind(result: dict) -> str:
    """What trained a sweep, from its ``machines`` (written by ``sweep``; older files carry a
    ``cpu_kind`` note instead of the flags)."""
    machines = result.get("machines") or []
    if any(str(m.get("device", "")).startswith("cuda") for m in machines):
        return "GPU"
    if any(m.get("cpu_native_bf16") or "bf16 was native" in m.get("cpu_kind", "") for m in machines):
        return "CPU, native bf16"
    if machines:
        return "CPU, bf16 emulated"
    return "machine not recorded"


def sweep_label(result: dict, name: str) -> str:
    """``name``, its epochs and precision, e.g. ``cnn: 160 epochs, bf16-mixed``; ``auto`` is shown
    as what it resolved to on the sweep's machines (``auto_precision``), e.g. ``auto: 32-true``."""
    trainer = result.get("config", {}).get("trainer", {})
    precision = trainer.get("precision", "?")
    resolved = sorted({m["auto_precision"] for m in result.get("machines") or [] if "auto_precision" in m})
    if precision == "auto" and resolved:
        precision = f"auto: {' / '.join(resolved)}"
    return f"{name}: {trainer.get('max_epochs', '?')} epochs, {precision}"


def budget_figure(results: dict[str, dict], title: str = "Accuracy for the training time spent") -> Figure:
    """Mean test accuracy over the swept folds (error bar: the folds' standard deviation)
    against the training hours of all folds together (``total_train_seconds``).

    ``results``: name -> a sweep's results JSON, as ``sweep --results`` writes it.
    """
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    for name, result in results.items():
        (run,) = result["runs"]
        hours = result["total_train_seconds"] / 3600
        kind = hardware_kind(result)
        ax.errorbar(hours, run["mean"]["accuracy"], yerr=run["std"]["accuracy"], fmt=MARKERS[kind], capsize=3,
                    label=f"{sweep_label(result, name)} ({kind})")
        ax.annotate(f"{run['mean']['accuracy']:.4f}", (hours, run["mean"]["accuracy"]),
                    textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.1)  # room for the last point's label
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 0.2, 0.5, 2, 5: every minor tick labelled, none crowded
    for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis(FormatStrFormatter("%g"))  # 0.2, 0.5, 2: hours, not powers of ten
    ax.set_xlabel(f"training hours, all {len(run['folds'])} folds (log scale)")
    ax.set_ylabel("test accuracy, mean over folds (± std)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
