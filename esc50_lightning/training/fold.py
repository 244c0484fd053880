"""One fold of a sweep: fit on the other four folds, test on this one, write its result file.

A fold is the unit every executor runs (in this process, in a local process, as a Ray task).
A finished fold is never trained again; an interrupted one resumes from its last checkpoint, but
only with the settings it was trained with: a changed setting is refused in one line unless the
fold is started over (``restart``). The result is written by the process that tested the model,
rank 0 under DDP, so it reaches the folder with any Lightning strategy (``ddp_spawn`` included).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.cli import LightningCLI

from esc50_lightning.atomic import write_json_atomic
from esc50_lightning.errors import ESC50Error
from esc50_lightning.provenance import cpu_steal_share, machine_info
from esc50_lightning.results import counted_accuracy
from esc50_lightning.training.recipe import resolved_changes, setting_differences
from esc50_lightning.training.settings import pin_hint, ran_with, resolution_here
from esc50_lightning.training.summary import FoldHParams
from esc50_lightning.training.sweep import FoldDir


def recorded_config(cli: LightningCLI) -> dict:
    """The CLI's resolved config as plain JSON: what a fold's result file records."""
    return json.loads(cli.parser.dump(cli.config, format="json", skip_link_targets=False))


def requested_config(fit_args: list[str]) -> dict:
    """The config ``fit_args`` resolve to, as ``run_fold`` would record it, without building the
    model, data or trainer."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    class ParseOnly(ESC50CLI):
        def _set_seed(self) -> None:  # parsing must not reseed this process
            pass

        def instantiate_classes(self) -> None:
            pass

    return recorded_config(ParseOnly(args=list(fit_args), run=False))


def check_resume(fold_dir: FoldDir, requested: dict, restart: bool, clear: bool = True,
                 requested_ran: dict | None = None) -> bool:
    """Let the fold go on from what its folder holds only with the settings it was trained with,
    ``auto`` ones as they resolved (``requested_ran``: what this run's Trainer and model resolve
    them to, ``settings.ran_with``): other settings are refused in one line, or with ``restart``
    the folder is cleared (by the one process that ``clear``s) and the fold starts over. Returns
    whether it starts over, the same on every DDP rank whichever cleared first."""
    trained = fold_dir.trained_config()
    trained_ran = fold_dir.trained_resolution() if trained else {}
    ran = resolution_here(requested, requested_ran)
    changed = setting_differences(trained, requested, trained_ran, ran) if trained else []
    if changed and not restart:
        pin = resolved_changes(trained_ran, ran)
        pin = f", pin {pin_hint(pin, trained_ran)} to go on as it ran" if pin else ""
        raise ESC50Error(f"fold {fold_dir.fold} in {fold_dir.path} was trained with other settings "
                         f"({'; '.join(changed)}); add --restart to train it afresh{pin}, or use a new --sweep_dir")
    if changed and clear:
        shutil.rmtree(fold_dir.path, ignore_errors=True)
    return bool(changed)


class WriteFoldResult(Callback):
    """After testing, rank 0 writes the fold's result file (metrics, confusion matrix,
    training time from ``timer``, the resolved config, the machine: CPU model and flags, device, and the
    share of CPU time a shared host's other guests took meanwhile)."""

    def __init__(self, fold_dir: FoldDir, timer: Timer, resumed: bool, config: dict) -> None:
        self.fold_dir, self.timer, self.resumed, self.config = fold_dir, timer, resumed, config
        self.epochs, self.dataset = 0, {}  # set by run_fold between fit and test, in the process that knows

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        confusion = pl_module.confusion.tolist()  # summed over every rank's clips
        metrics = trainer.callback_metrics
        result = {
            "fold": self.fold_dir.fold,
            "accuracy": counted_accuracy(confusion),
            **{k: float(metrics[f"test/{k}"]) for k in ("precision", "recall", "f1")},
            "train_seconds": round(self.timer.time_elapsed("train"), 1),
            "epochs": self.epochs,
            "resumed": self.resumed,
            "devices": trainer.world_size,
            "precision_used": str(trainer.precision),
            "resolved": ran_with(trainer, pl_module),  # what the auto settings ran as (training.settings)
            "machine": machine_info(),
            "cpu_steal_share": cpu_steal_share(),  # during this process's run (the last one, if resumed)
            "confusion_matrix": confusion,
            "class_names": list(trainer.datamodule.class_names),
            "config": self.config,
            "dataset": self.dataset,
        }
        write_json_atomic(self.fold_dir.result_file, result)


def run_fold(fit_args: list[str], fold_dir: FoldDir, restart: bool = False, test: bool = True,
             callbacks: Sequence[Callback] = ()) -> dict:
    """Fit and test one fold (resuming from its last checkpoint); return its saved result.

    ``callbacks`` join the Trainer's. ``test=False`` (a search, ``training.tune``) never evaluates the
    test fold and writes no result file: the weights it would be tested with are validated instead,
    and ``{"fold", "validation" (metrics), "epochs", "train_seconds", "config"}`` is returned."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    cli = ESC50CLI(args=[*fit_args, f"--data.fold={fold_dir.fold}", *fold_dir.logger_args()], run=False)
    config = recorded_config(cli)
    starts_over = check_resume(fold_dir, config, restart, clear=cli.trainer.is_global_zero,
                               requested_ran=ran_with(cli.trainer, cli.model))
    timer = Timer()  # saved in every checkpoint: a resumed fold reports its whole training time
    last = fold_dir.checkpoint
    resumed = last.exists() and not starts_over
    dm = cli.datamodule
    writer = WriteFoldResult(fold_dir, timer, resumed, config)
    cli.trainer.callbacks.extend([timer, writer, FoldHParams(config), *callbacks])
    if resumed and cli.trainer.is_global_zero:
        print(f"fold {fold_dir.fold}: resuming from {last}")
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
    if not test:
        metrics = cli.trainer.validate(cli.model, datamodule=dm, verbose=False)[0]
        return {"fold": fold_dir.fold, "validation": {k: float(v) for k, v in metrics.items()},
                "epochs": writer.epochs, "train_seconds": round(timer.time_elapsed("train"), 1), "config": config}
    dm.load_all()  # in this process (ddp_spawn trained in others)
    writer.dataset = {"root": str(dm.root), "sample_rate": dm.sample_rate, "clips": len(dm.meta),
                      "train_clips": len(dm.split()["train"])}
    cli.trainer.test(cli.model, datamodule=dm, verbose=False)
    cli.trainer.strategy.barrier("fold result written")
    result = fold_dir.result()
    if result is None:
        raise ESC50Error(f"fold {fold_dir.fold}: no readable {fold_dir.result_file} after testing")
    return result
