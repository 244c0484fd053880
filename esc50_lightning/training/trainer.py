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

from esc50_lightning.hardware import AUTO, detect, keep_freed_memory, resolve_precision


def compatible_callbacks(
    callbacks: list[Callback] | Callback | None, enable_checkpointing: bool | None, logger: object
) -> list[Callback] | Callback | None:
    """Drop the default callbacks a switch turns off: ``ModelCheckpoint`` under
    ``enable_checkpointing false`` and ``LearningRateMonitor`` under ``logger false``
    (Lightning refuses both combinations)."""
    if not isinstance(callbacks, list):
        return callbacks
    if enable_checkpointing is False:
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    if logger is False:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


class ESC50Trainer(L.Trainer):
    """``lightning.Trainer`` whose ``precision`` defaults to ``auto``: the hardware policy
    (``esc50_lightning.hardware``) picks ``bf16-mixed``, ``16-mixed`` or ``32-true`` for the
    device it trains on and says so in one log line. An explicit precision is used as given.
    It also sets the process's allocator policy (``hardware.keep_freed_memory``).
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
        keep_freed_memory()  # before the first batch allocates (hardware.py)
        super().__init__(
            accelerator=accelerator,
            precision=resolve_precision(precision, hardware, announce=rank_zero_only.rank == 0),
            callbacks=compatible_callbacks(callbacks, enable_checkpointing, logger),
            enable_checkpointing=enable_checkpointing,
            logger=logger,
            **kwargs,
        )
