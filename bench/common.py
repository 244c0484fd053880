"""Shared by the benchmarks: machine description, repeated timing, result files."""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from esc50_lightning.allocator import KEEP_FREED_MEMORY_ENV
from esc50_lightning.atomic import write_json_atomic
from esc50_lightning.errors import ESC50Error
from esc50_lightning.provenance import cpu_steal_share, machine_info
from esc50_lightning.training.sweep import FoldDir

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
        sys.exit("set ESC50_ROOT to an ESC-50 root (the folder holding meta/esc50.csv and audio/)")
    return Path(root)


def write(name: str, figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    env = f"ESC50_ROOT={os.environ.get('ESC50_ROOT', '')}"
    if KEEP_FREED_MEMORY_ENV in os.environ:  # the allocator policy, when the run set it
        env += f" {KEEP_FREED_MEMORY_ENV}={os.environ[KEEP_FREED_MEMORY_ENV]}"
    doc = {"benchmark": name, "command": f"{env} {command}",
           "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "cpu_steal_share": cpu_steal_share(),  # CPU time the hypervisor gave other guests meanwhile
           **figures}
    write_json_atomic(path, doc)
    return path


def fold_folder(path: str) -> FoldDir:
    """``argparse`` type of a finished sweep fold named on the command line: ``<sweep>/fold<K>``."""
    try:
        return FoldDir.of(path)
    except ESC50Error as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def one_fold_run(config: str, fold: int, epochs: int, variant: str = "full",
                 overrides: tuple[str, ...] = ()) -> FoldDir:
    """Train ``config`` on ``fold`` for ``epochs`` (a one-fold ``sweep``) and return the fold's folder.

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
    fold_dir = FoldDir(sweep_dir, fold)
    if fold_dir.result() is None:
        cli_main(["sweep", f"--config={config}", f"--folds={fold}", f"--sweep_dir={sweep_dir}",
                  f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false", *overrides])
    return fold_dir


def weights_accuracies(fold_dir: FoldDir) -> dict[str, dict[str, float]]:
    """Validation and test accuracy of both weight sets in a fold's checkpoint, each as saved
    and with its BatchNorm statistics re-estimated on the (unaugmented) training clips.

    A run with Lightning's ``WeightAveraging`` (EMA, SWA) saves the averaged weights as
    ``state_dict`` and the raw weights of the same trajectory as ``current_model_state``:
    evaluating both, with the same code and precision, gives the lever's effect without a
    second training run. An average of weights does not come with the statistics of its own
    activations (the averaged BatchNorm buffers are an average too): the re-estimated rows
    show how much of a gap that explains. Runs without averaging give the ``raw`` rows only.
    """
    import torch

    from esc50_lightning.console import configure_console
    from esc50_lightning.data import ESC50DataModule
    from esc50_lightning.models import AudioClassifier
    from esc50_lightning.results import counted_accuracy
    from esc50_lightning.training.ema import recalibrate_batchnorm
    from esc50_lightning.training.trainer import ESC50Trainer

    configure_console()
    path = fold_dir.checkpoint
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    states = {"raw": ckpt.get("current_model_state", ckpt["state_dict"])}
    if "current_model_state" in ckpt:
        states["averaged"] = ckpt["state_dict"]
    dm = ESC50DataModule.load_from_checkpoint(path)
    model = AudioClassifier.load_from_checkpoint(path, map_location="cpu")
    dm.setup("fit")
    out = {}
    for name, state in states.items():
        for bn in ("", "_bn_recomputed"):
            model.load_state_dict(state)
            if bn:  # as WarmupEMA(recalibrate_bn=True) does at the end of training
                recalibrate_batchnorm(model, dm.clean_batches("train", model.device))
            trainer = ESC50Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                   enable_model_summary=False, precision="32-true")
            val = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/acc"]
            trainer.test(model, datamodule=dm, verbose=False)
            out[name + bn] = {"val_accuracy": float(val), "test_accuracy": counted_accuracy(model.confusion.tolist())}
    return out
