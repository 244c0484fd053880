"""``ESC50Trainer``: Lightning's Trainer with ``precision: auto`` and switches that combine.

Everything else is Lightning's own Trainer, argument for argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import lightning as L
from lightning.pytorch.accelerators import Accelerator
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.allocator import keep_freed_memory
from esc50_lightning.hardware import AUTO, detect, resolve_precision
from esc50_lightning.training.callbacks import ConfusionFigure


def standard_callbacks(
    callbacks: list[Callback] | Callback | None, enable_checkpointing: bool | None, logger: object
) -> list[Callback]:
    """``callbacks`` plus what every run of ours needs, unless a switch turns it off or the list
    has one of the kind already: ``ModelCheckpoint(save_last=True)`` (what runs and sweeps resume
    from), ``LearningRateMonitor`` and ``ConfusionFigure`` (with a logger). A config that lists
    callbacks of its own (``trainer.callbacks: [...]``) replaces LightningCLI's defaults; these
    stay."""
    callbacks = list(callbacks) if isinstance(callbacks, Iterable) else [callbacks] if callbacks else []
    wanted = []
    if enable_checkpointing is not False:
        wanted.append(ModelCheckpoint(save_last=True))
    if logger is not False:
        wanted += [LearningRateMonitor("epoch"), ConfusionFigure()]
    return callbacks + [c for c in wanted if not any(isinstance(have, type(c)) for have in callbacks)]


class ESC50Trainer(L.Trainer):
    """``lightning.Trainer`` whose ``precision`` defaults to ``auto``: the hardware policy
    (``esc50_lightning.hardware``) picks ``bf16-mixed``, ``16-mixed`` or ``32-true`` for the
    device it trains on and says so in one log line. An explicit precision is used as given.
    It also sets the process's allocator policy (``allocator.keep_freed_memory``) and adds the
    callbacks every run needs (``standard_callbacks``).
    """

    def __init__(
        self,
        *,
        accelerator: str | Accelerator = AUTO,
        precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO,
        callbacks: list[Callback] | Callback | None = None,
        enable_checkpointing: bool | None = None,
        logger: Logger | Iterable[Logger] | bool | None = None,
        **kwargs: Any,
    ) -> None:
        hardware = detect(accelerator if isinstance(accelerator, str) else AUTO)
        keep_freed_memory()  # before the first batch allocates (allocator.py)
        super().__init__(
            accelerator=accelerator,
            precision=resolve_precision(precision, hardware, announce=rank_zero_only.rank == 0),
            callbacks=standard_callbacks(callbacks, enable_checkpointing, logger),
            enable_checkpointing=enable_checkpointing,
            logger=logger,
            **kwargs,
        )
