"""``WarmupEMA``: Lightning's weight averaging with an exponential moving average that warms up,
and BatchNorm statistics measured for the averaged weights.

Lightning's ``EMAWeightAveraging`` uses a fixed decay from the first step, so for the first
``1 / (1 - decay)`` steps the average is mostly the random initial weights (validation near
chance for the first epochs, and a trace of them even at the end of a short schedule). Here the
decay grows as ``min(decay, (1 + n) / (10 + n))`` with ``n`` the updates so far, as in
TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and timm's ``ModelEmaV3``.

An average of weights comes with an average of BatchNorm running statistics, which are neither
those of its own activations nor those of clean clips (training batches are augmented and mixed).
On fold 1 re-estimating them (``torch.optim.swa_utils.update_bn``, as SWA does) on the training
clips without augmentation raised validation accuracy for 7 of 10 weight sets (README, "Towards 0.90").

The average lives on the training device (``DeviceAveragedModel``): Lightning's ``WeightAveraging``
builds it in its ``setup`` hook, before the model moves to the GPU, so every step would copy each
parameter to the CPU and average it there. Its update count is a Python number, so a step never
waits for the GPU to read a tensor back.
"""

from __future__ import annotations

import itertools
import os

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from esc50_lightning.atomic import save_torch_atomic


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of update ``updates + 1``: ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(decay, (1 + updates) / (10 + updates))


def recalibrate_batchnorm(module: torch.nn.Module, batches: object) -> None:
    """Re-estimate ``module``'s BatchNorm running statistics from ``batches`` (inputs, on its
    device), in fp32 and eagerly (a compiled network would recompile for BatchNorm's cumulative
    mode); a module without BatchNorm is left as it is. ``update_bn`` runs without gradients."""
    with torch.compiler.set_stance("force_eager"):
        update_bn(batches, module)


class DeviceAveragedModel(AveragedModel):
    """``torch.optim.swa_utils.AveragedModel`` (parameters and buffers) whose update never syncs
    with the device: the number of updates is kept in Python (``updates``; the ``n_averaged``
    buffer follows it for checkpoints, written without being read), where torch's
    ``update_parameters`` compares the ``n_averaged`` tensor twice a step. ``follow`` moves the
    average to the device the trained module is on."""

    def __init__(self, model: torch.nn.Module, multi_avg_fn, device: torch.device | None = None) -> None:
        super().__init__(model, device=device, multi_avg_fn=multi_avg_fn, use_buffers=True)
        self.updates = 0

    @property
    def device(self) -> torch.device:
        return self.n_averaged.device

    def follow(self, module: torch.nn.Module) -> None:
        """Put the average where ``module``'s parameters are (once, when it has moved)."""
        device = next(itertools.chain(module.parameters(), module.buffers()), self.n_averaged).device
        if device != self.device:
            self.to(device)

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        averaged = [t.detach() for t in itertools.chain(self.module.parameters(), self.module.buffers())]
        current = [t.detach().to(a.device) for a, t in zip(averaged, itertools.chain(model.parameters(),
                                                                                      model.buffers()))]
        if self.updates == 0:
            for avg, cur in zip(averaged, current):
                avg.copy_(cur)
        else:
            for ([avg, cur], _) in _group_tensors_by_device_and_dtype([averaged, current]).values():
                self.multi_avg_fn(avg, cur, self.updates)
        self.updates += 1
        self.n_averaged.fill_(self.updates)  # a kernel launch with a Python number: nothing read back

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)  # once, when a checkpoint is restored
        return result


class WarmupEMA(WeightAveraging):
    """Exponential moving average of the weights (and BatchNorm statistics), updated after every
    optimiser step, with the warm-up above; validated, tested and checkpointed as Lightning's
    ``WeightAveraging`` does (the raw weights stay in the checkpoint as ``current_model_state``).

    Args:
        decay: the decay once warmed up; the average spans about ``1 / (1 - decay)`` steps.
        recalibrate_bn: at the end of training, re-estimate the averaged weights' BatchNorm
            statistics on the training clips without augmentation (one forward pass). The last
            checkpoint, the sweep's test and ``classify`` then all use them, however training
            ended. Where the end is known before the last epoch's validation (``max_epochs``,
            ``max_steps``) they are measured then, so the last ``val/acc`` measures them; where
            it is decided after (``EarlyStopping``, ``max_time``), in ``on_train_end``, which
            also rewrites the checkpoints saved at that last step with them.
    """

    def __init__(self, decay: float = 0.999, recalibrate_bn: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WarmupEMA: decay must be in (0, 1), got {decay}")
        self.decay, self.recalibrate_bn = decay, recalibrate_bn
        self._recalibrated_at = -1  # the global step of the last recalibration
        super().__init__(multi_avg_fn=self.average)

    def average(self, averaged: list[torch.Tensor], current: list[torch.Tensor],
                num_averaged: int | torch.Tensor) -> None:
        """Update ``averaged`` in place (one call per device and dtype, as torch's EMA does);
        ``num_averaged`` is a Python number from ``DeviceAveragedModel`` (a tensor, read once,
        from torch's ``AveragedModel``)."""
        weight = 1.0 - warmup_decay(self.decay, int(num_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (BatchNorm's num_batches_tracked)
            for avg, cur in zip(averaged, current):
                avg.copy_(avg * (1.0 - weight) + cur * weight)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """As Lightning's, with the average built on the device the Trainer trains on (the
        module is still on the CPU at this hook) and updated without device syncs."""
        if stage != "fit":
            return
        if is_overridden("configure_model", pl_module):
            pl_module.configure_model()  # layers (and our compile/layout) before the copy, as Lightning does
        device = self._device if self._device is not None else trainer.strategy.root_device
        self._average_model = DeviceAveragedModel(pl_module, self.average, device=device)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None and self._device is None:
            self._average_model.follow(pl_module)  # wherever the strategy has put the module

    @staticmethod
    def _ends_after_this_epoch(trainer: Trainer) -> bool:
        """What is known before the epoch's validation and checkpoint: its limits are reached."""
        by_epochs = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
        by_steps = trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step
        return by_epochs or by_steps

    def _recalibrate(self, trainer: Trainer) -> bool:
        """Re-estimate the averaged weights' statistics, once per step; whether it did now."""
        if (not self.recalibrate_bn or trainer.sanity_checking or self._average_model is None
                or self._recalibrated_at == trainer.global_step):
            return False
        dm, module = trainer.datamodule, self._average_model.module
        self._recalibrated_at = trainer.global_step
        if not hasattr(dm, "clean_batches"):  # trained from bare dataloaders: no clean clips to ask for
            rank_zero_warn("WarmupEMA: recalibrate_bn needs the ESC50DataModule; BatchNorm statistics left averaged")
            return False
        recalibrate_batchnorm(module, dm.clean_batches("train", next(module.parameters()).device))
        return True

    def _recalibrate_after_last_batch(self, trainer: Trainer) -> None:
        if self._ends_after_this_epoch(trainer):
            self._recalibrate(trainer)

    def _rewrite_checkpoints(self, trainer: Trainer) -> None:
        """Put the recalibrated averaged weights into the checkpoints saved at this (last) step,
        which were written before the stop was decided; the rest of each file (loop state,
        ``current_model_state``, optimiser) stays as Lightning wrote it, so resuming and the
        epoch count read from it are unchanged."""
        if not trainer.is_global_zero:
            return
        state = self._average_model.state_dict()
        averaged = {name[len("module."):]: value for name, value in state.items() if name.startswith("module.")}
        paths = {p for cb in trainer.checkpoint_callbacks for p in (cb.last_model_path, *cb.best_k_models) if p}
        device = self._average_model.device
        for path in sorted({os.path.realpath(p) for p in paths if os.path.isfile(p)}):
            ckpt = torch.load(path, map_location=device, weights_only=False)
            if ckpt.get("global_step") != trainer.global_step or "current_model_state" not in ckpt:
                continue  # an earlier epoch's, or not written by weight averaging
            ckpt["state_dict"] = {name: averaged[name].detach().to(value.device) if name in averaged else value
                                  for name, value in ckpt["state_dict"].items()}
            save_torch_atomic(ckpt, path)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._recalibrate_after_last_batch(trainer)  # then validated with the averaged weights
        super().on_validation_epoch_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._recalibrate_after_last_batch(trainer)  # without validation: before the checkpoint

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a stop decided after the last checkpoint (EarlyStopping, max_time): recalibrate now
        if self._recalibrate(trainer):
            self._rewrite_checkpoints(trainer)
        super().on_train_end(trainer, pl_module)  # the averaged weights into the module, as tested next
