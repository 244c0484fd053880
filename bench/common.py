"""Shared by the benchmarks: machine description, repeated timing, result files."""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from esc50_lightning.hardware import machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The machine a result was measured on: CPU model and capability flags (AVX2, AVX-512,
    AVX-512 BF16, AMX), whether bf16 is native, the device and the precision ``auto`` picks."""
    return machine_info()


def timed(fn: Callable[[], object], repeats: int = 3) -> tuple[float, list[float], object]:
    """Median seconds of ``repeats`` calls, every time, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), [round(t, 4) for t in times], result


def data_root() -> Path:
    root = os.environ.get("ESC50_ROOT")
    if not root or not (Path(root) / "meta" / "esc50.csv").is_file():
        sys.exit("set ESC50_ROOT to an ESC-50 root (python ../shared/esc50/unpack.py /tmp/ESC-50-16k)")
    return Path(root)


def write(name: str, figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    doc = {"benchmark": name, "command": f"ESC50_ROOT={os.environ.get('ESC50_ROOT', '')} {command}",
           "machine": machine(), "date": time.strftime("%Y-%m-%d"), **figures}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def one_fold_run(config: str, fold: int, epochs: int, variant: str = "full", overrides: tuple[str, ...] = ()) -> Path:
    """Train ``config`` on ``fold`` for ``epochs`` (a one-fold ``sweep``) and return the fold folder.

    Runs with the same settings are trained once and shared: the config as it is, at its own
    epoch count, is the fold of ``esc50-lightning sweep`` (``lightning_logs/sweeps/<name>``);
    any other budget or variant lives in ``lightning_logs/bench/<name>/<epochs>ep/<variant>``.
    An interrupted run resumes from its last checkpoint.
    """
    import yaml

    from esc50_lightning.cli import main as cli_main

    name = Path(config).stem
    own_epochs = yaml.safe_load(Path(config).read_text()).get("trainer", {}).get("max_epochs")
    if variant == "full" and not overrides and epochs == own_epochs:
        sweep_dir = Path("lightning_logs") / "sweeps" / name
    else:
        sweep_dir = Path("lightning_logs") / "bench" / name / f"{epochs}ep" / variant
    fold_dir = sweep_dir / f"fold{fold}"
    if not (fold_dir / "result.json").exists():
        cli_main(["sweep", f"--config={config}", f"--folds={fold}", f"--sweep_dir={sweep_dir}",
                  f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false", *overrides])
    return fold_dir
