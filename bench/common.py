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

from esc50_lightning.hardware import KEEP_FREED_MEMORY_ENV, cpu_steal_share, machine_info

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
    env = f"ESC50_ROOT={os.environ.get('ESC50_ROOT', '')}"
    if KEEP_FREED_MEMORY_ENV in os.environ:  # the allocator policy, when the run set it
        env += f" {KEEP_FREED_MEMORY_ENV}={os.environ[KEEP_FREED_MEMORY_ENV]}"
    doc = {"benchmark": name, "command": f"{env} {command}",
           "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "cpu_steal_share": cpu_steal_share(),  # CPU time the hypervisor gave other guests meanwhile
           **figures}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def load_fold_model(ckpt_path: Path, cache: dict | None = None) -> tuple:
    """``(model, data, epoch)``: a checkpoint's classifier in eval mode, its datamodule set up for
    testing on the real data, holding the normaliser the checkpoint was tested with, and the index of
    the last epoch it trained (Lightning's ``epoch``; ``epoch + 1`` epochs). Pass the same ``cache``
    dict for several checkpoints: runs with the same feature settings share one datamodule (its
    normaliser is reloaded here, so use ``data`` before loading the next checkpoint)."""
    import torch

    from esc50_lightning.data.datamodule import ESC50DataModule
    from esc50_lightning.models.classifier import AudioClassifier

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model = AudioClassifier.load_from_checkpoint(ckpt_path, map_location="cpu").eval()
    settings = {k: v for k, v in ckpt["datamodule_hyper_parameters"].items()
                if not k.startswith("_") and k != "augment"}  # Lightning's bookkeeping; training only
    key = json.dumps(settings, sort_keys=True, default=str)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = ESC50DataModule(**{**settings, "root": str(data_root())})
        cache[key].setup("test")
    data = cache[key]
    data.load_state_dict(ckpt["ESC50DataModule"])
    return model, data, ckpt["epoch"]


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


def weights_accuracies(fold_dir: Path) -> dict[str, dict[str, float]]:
    """Validation and test accuracy of both weight sets in a run's ``last.ckpt``, each as saved
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
    from esc50_lightning.training.averaging import recalibrate_batchnorm
    from esc50_lightning.training.fold import counted_accuracy
    from esc50_lightning.training.trainer import ESC50Trainer

    configure_console()
    path = Path(fold_dir) / "checkpoints" / "last.ckpt"
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
