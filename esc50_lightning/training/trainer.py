"""``ESC50Trainer``: Lightning's Trainer with ``precision: auto`` and switches that combine.

Everything else is Lightning's own Trainer, argument for argument. Its defaults live here rather
than in LightningCLI's ``trainer_defaults`` because each one needs code, not a value: ``auto`` is
no precision Lightning accepts, the callbacks every run needs must survive a config that lists
callbacks of its own (``trainer_defaults`` would be replaced by it), and the benchmarks and
tests build this Trainer without the CLI. The one default that needs the model (a network that
trains faster in fp32 on a CPU) is applied by the CLI's ``instantiate_trainer`` hook, where the
model exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.accelerators import Accelerator
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.allocator import keep_freed_memory
from esc50_lightning.hardware import AUTO, detect, resolve_precision, use_tensor_cores
from esc50_lightning.training.callbacks import ConfusionFigure
from esc50_lightning.training.settings import RanWith


def standard_callbacks(
    callbacks: list[Callback] | Callback | None, enable_checkpointing: bool | None, logger: object
) -> list[Callback]:
    """``callbacks`` plus what every run of ours needs, unless a switch turns it off or the list
    has one of the kind already: ``ModelCheckpoint(save_last=True)`` (what runs and sweeps resume
    from) with ``RanWith`` (what a resume is compared against: the precision, compilation and
    layout the run resolved), ``LearningRateMonitor`` and ``ConfusionFigure`` (with a logger). A
    config that lists callbacks of its own (``trainer.callbacks: [...]``) replaces LightningCLI's
    defaults; these stay."""
    callbacks = list(callbacks) if isinstance(callbacks, Iterable) else [callbacks] if callbacks else []
    wanted = []
    if enable_checkpointing is not False:
        wanted += [ModelCheckpoint(save_last=True), RanWith()]
    if logger is not False:
        wanted += [LearningRateMonitor("epoch"), ConfusionFigure()]
    return callbacks + [c for c in wanted if not any(isinstance(have, type(c)) for have in callbacks)]


_FORKED_WORKERS_SINGLE_THREADED = False


def _one_thread_after_fork() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # else Lightning's DDP setup gives the worker cpu_count / processes again


def single_threaded_forked_workers() -> None:
    """Workers that Lightning forks (``ddp_fork``, ``ddp_notebook``) compute with one CPU
    thread: GNU OpenMP, torch's CPU thread pool, cannot start threads in a process forked after
    it ran, and the worker's first parallel operation (decoding, features) would hang for good.
    Registered once per process (a fork handler cannot be removed; DataLoader workers, forked
    too, run single-threaded anyway)."""
    global _FORKED_WORKERS_SINGLE_THREADED
    if not _FORKED_WORKERS_SINGLE_THREADED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_one_thread_after_fork)
        _FORKED_WORKERS_SINGLE_THREADED = True


class ESC50Trainer(L.Trainer):
    """``lightning.Trainer`` whose ``precision`` defaults to ``auto``: the hardware policy
    (``esc50_lightning.hardware``) picks ``bf16-mixed``, ``16-mixed`` or ``32-true`` for the
    device it trains on and says so in one log line. An explicit precision is used as given.
    On CUDA, ``benchmark`` (cuDNN's autotuner) defaults to on unless ``deterministic``, and fp32
    matrix products use TF32. It also sets the process's allocator policy
    (``allocator.keep_freed_memory``) and adds the callbacks every run needs
    (``standard_callbacks``). Building it creates no CUDA context (``hardware.detect`` asks
    NVML), so Lightning can still fork worker processes (``ddp_fork``, ``ddp_notebook``); those
    workers compute with one CPU thread (``single_threaded_forked_workers``).
    """

    def __init__(
        self,
        *,
        accelerator: str | Accelerator = AUTO,
        precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO,
        benchmark: bool | None = None,
        deterministic: bool | Literal["warn"] | None = None,
        callbacks: list[Callback] | Callback | None = None,
        enable_checkpointing: bool | None = None,
        logger: Logger | Iterable[Logger] | bool | None = None,
        **kwargs: Any,  # used only in the call below: LightningCLI then lists every Trainer argument
    ) -> None:
        hardware = detect(accelerator if isinstance(accelerator, str) else AUTO)
        keep_freed_memory()  # before the first batch allocates (allocator.py)
        if hardware.device == "cuda":
            use_tensor_cores("cuda")  # a flag, no CUDA call; the training process sets it again (classifier)
            if benchmark is None and not deterministic:
                benchmark = True  # Lightning carries this flag into the processes it spawns
        super().__init__(
            accelerator=accelerator,
            precision=resolve_precision(precision, hardware, announce=rank_zero_only.rank == 0),
            benchmark=benchmark,
            deterministic=deterministic,
            callbacks=standard_callbacks(callbacks, enable_checkpointing, logger),
            enable_checkpointing=enable_checkpointing,
            logger=logger,
            **kwargs,
        )
        if getattr(getattr(self.strategy, "launcher", None), "_start_method", None) == "fork":
            single_threaded_forked_workers()
