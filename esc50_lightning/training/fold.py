"""One fold of a sweep: fit on the other four folds, test on this one, write ``result.json``.

A fold is the unit every executor runs (in this process, in a local process, as a Ray task):
its folder ``<sweep_dir>/fold<K>/`` holds TensorBoard events, ``checkpoints/last.ckpt`` and,
once tested, ``result.json``. A finished fold is never trained again; an interrupted one resumes
from its last checkpoint. The result is written by the process that tested the model, rank 0
under DDP, so it reaches the folder with any Lightning strategy (``ddp_spawn`` included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.cli import LightningCLI

from esc50_lightning.hardware import cpu_steal_share, machine_info
from esc50_lightning.results import write_json_atomic


def counted_accuracy(confusion: list[list[int]]) -> float:
    """Accuracy as correct / total from the confusion matrix's counts: exact, where torchmetrics'
    float32 value of 800/2000 reads 0.39999999."""
    counts = np.asarray(confusion)
    return float(np.trace(counts) / counts.sum())


def result_path(fold_dir: Path) -> Path:
    return Path(fold_dir) / "result.json"


def fold_status(fold_dir: Path) -> str:
    """One line on where a fold stands: tested (its accuracy), part-trained (epochs so far, from
    ``last.ckpt``, where a new run resumes), or not started."""
    fold_dir = Path(fold_dir)
    if result_path(fold_dir).exists():
        result = json.loads(result_path(fold_dir).read_text())
        return (f"done: test accuracy {result['accuracy']:.4f} after {result['epochs']} epochs, "
                f"{result['train_seconds']:,.1f} s of training")
    last = fold_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return "not started"
    try:
        state = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
        epochs, timer = state["epoch"] + 1, state.get("callbacks", {}).get("Timer", {})
    except Exception as err:  # noqa: BLE001 - a status line, not a traceback
        return f"{last}: not a readable checkpoint ({type(err).__name__}); the next run cannot resume from it"
    target = ""
    if (fold_dir / "config.yaml").exists():
        max_epochs = (yaml.safe_load((fold_dir / "config.yaml").read_text()) or {}).get("trainer", {}).get("max_epochs")
        target = f" of {max_epochs}" if max_epochs else ""
    seconds = timer.get("time_elapsed", {}).get("train", 0.0)
    return (f"{epochs}{target} epochs trained ({seconds:,.1f} s), not tested yet (running, or stopped: "
            f"a new run resumes from {last})")


# settings that say where or how verbosely a fold ran, not what was trained
NOT_COMPARED = ("trainer.logger", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "data.fold", "data.root", "data.cache_dir", "data.num_workers")


def flat_settings(config: dict, prefix: str = "") -> dict:
    """``{"trainer": {"max_epochs": 2}}`` -> ``{"trainer.max_epochs": 2}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recorded_config(cli: LightningCLI) -> dict:
    """The CLI's resolved config as plain JSON: what a fold's ``result.json`` records."""
    return json.loads(cli.parser.dump(cli.config, format="json", skip_link_targets=False))


def requested_config(fit_args: list[str]) -> dict:
    """The config ``fit_args`` resolve to, as ``run_fold`` would record it, without building the
    model, data or trainer."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    class ParseOnly(ESC50CLI):
        def instantiate_classes(self) -> None:
            pass

    return recorded_config(ParseOnly(args=list(fit_args), run=False))


def setting_differences(trained: dict, requested: dict) -> list[str]:
    """``name trained -> requested`` for each setting both configs hold with different values."""
    old, new = flat_settings(trained), flat_settings(requested)
    return [f"{key} {old[key]!r} -> {new[key]!r}" for key in old
            if key in new and old[key] != new[key] and not key.startswith(NOT_COMPARED)]


class WriteFoldResult(Callback):
    """After testing, rank 0 writes the fold's ``result.json`` (metrics, confusion matrix,
    training time from ``timer``, the resolved config, the machine: CPU model and flags, device, and the
    share of CPU time a shared host's other guests took meanwhile)."""

    def __init__(self, fold: int, fold_dir: Path, timer: Timer, resumed: bool, config: dict) -> None:
        self.fold, self.fold_dir, self.timer, self.resumed, self.config = fold, Path(fold_dir), timer, resumed, config
        self.epochs, self.dataset = 0, {}  # set by run_fold between fit and test, in the process that knows

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        confusion = pl_module.confusion.tolist()  # summed over every rank's clips
        metrics = trainer.callback_metrics
        result = {
            "fold": self.fold,
            "accuracy": counted_accuracy(confusion),
            **{k: float(metrics[f"test/{k}"]) for k in ("precision", "recall", "f1")},
            "train_seconds": round(self.timer.time_elapsed("train"), 1),
            "epochs": self.epochs,
            "resumed": self.resumed,
            "devices": trainer.world_size,
            "precision_used": str(trainer.precision),
            "machine": machine_info(),
            "cpu_steal_share": cpu_steal_share(),  # during this process's run (the last one, if resumed)
            "confusion_matrix": confusion,
            "class_names": list(trainer.datamodule.class_names),
            "config": self.config,
            "dataset": self.dataset,
        }
        write_json_atomic(result, result_path(self.fold_dir))


def run_fold(fit_args: list[str], fold: int, fold_dir: Path) -> dict:
    """Fit and test one fold (resuming from ``last.ckpt``); return its saved result."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    fold_dir = Path(fold_dir)
    logger = [
        "--trainer.logger.class_path=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={fold_dir.parent}",
        "--trainer.logger.init_args.name=",
        f"--trainer.logger.init_args.version={fold_dir.name}",
    ]
    cli = ESC50CLI(args=[*fit_args, f"--data.fold={fold}", *logger], run=False)
    timer = Timer()  # saved in every checkpoint: a resumed fold reports its whole training time
    last = fold_dir / "checkpoints" / "last.ckpt"
    resumed = last.exists()
    config = recorded_config(cli)
    dm = cli.datamodule
    writer = WriteFoldResult(fold, fold_dir, timer, resumed, config)
    cli.trainer.callbacks.extend([timer, writer])
    if resumed and cli.trainer.is_global_zero:
        print(f"fold {fold}: resuming from {last}")
    cli.trainer.fit(cli.model, datamodule=dm, ckpt_path=str(last) if resumed else None)
    if cli.trainer.interrupted:
        raise KeyboardInterrupt
    writer.epochs = cli.trainer.current_epoch
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        # test what the checkpoint holds: averaged weights too, after a resume that trained nothing
        cli.model.load_state_dict(state["state_dict"])
        if not timer.time_elapsed("train"):  # ddp_spawn trained in other processes
            timer.load_state_dict(state["callbacks"][timer.state_key])
            writer.epochs = state["epoch"] + 1
    dm.load_all()  # in this process (ddp_spawn trained in others)
    writer.dataset = {"root": str(dm.root), "sample_rate": dm.sample_rate, "clips": len(dm.meta)}
    cli.trainer.test(cli.model, datamodule=dm, verbose=False)
    cli.trainer.strategy.barrier("fold result written")
    return json.loads(result_path(fold_dir).read_text())


def main(argv: list[str] | None = None) -> None:
    """``python -m esc50_lightning.training.fold FOLD FOLD_DIR [fit options]``: one fold in a
    process of its own (how ``sweep --jobs N`` runs folds side by side)."""
    import sys

    from esc50_lightning.console import configure_console
    from esc50_lightning.errors import ESC50Error

    argv = sys.argv[1:] if argv is None else argv
    configure_console()
    try:
        run_fold(argv[2:], int(argv[0]), Path(argv[1]))
    except ESC50Error as err:
        print(f"esc50-lightning: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
