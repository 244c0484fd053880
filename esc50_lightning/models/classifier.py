"""``AudioClassifier``: the one LightningModule. Loss, mixup, metrics, optimiser and schedule;
the network itself is any ``nn.Module`` built from ``(n_bins, n_frames, num_classes)``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from esc50_lightning.hardware import AUTO, resolve_switch
from esc50_lightning.models.distill import check_teacher, distillation_loss, teacher_path
from esc50_lightning.models.encoder_training import (
    check_encoder_input,
    check_encoder_options,
    freeze_for_epoch,
    parameter_groups,
)
from esc50_lightning.models.encoders.base import is_encoder
from esc50_lightning.models.hardware_switches import COMPILE_OPTIONS, HardwareSwitches
from esc50_lightning.models.metrics import metric_collection
from esc50_lightning.models.time_shifts import shift_averaged

# re-exported: imported from here before they had modules of their own
__all__ = ["COMPILE_OPTIONS", "AudioClassifier", "NetFactory", "metric_collection", "shift_averaged"]

NetFactory = Callable[[int, int, int], nn.Module]


class AudioClassifier(HardwareSwitches, L.LightningModule):
    """Classifies ``(batch, bins, frames)`` spectrograms into ``num_classes``.

    Args:
        net: builds the network from ``(n_bins, n_frames, num_classes)`` (in a config:
            ``class_path`` of ``MLP``, ``Conv1D``, ``CNN`` or your own, plus ``init_args``).
        input_shape: ``(bins, frames)``, linked from the DataModule by the CLI.
        optimizer: built from the parameters (``--model.optimizer``; default AdamW, lr 1e-3).
        lr_schedule: per-step multiplier of the optimiser's learning rate: ``constant``, or
            ``cosine`` decay to 0 after ``warmup_epochs`` of linear warm-up.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: Beta(alpha, alpha) mixup of training batches (0: off); the loss mixes the
            two targets' cross-entropies with the same weight.
        tta_shifts: in evaluation, average the class probabilities over this many circular time
            shifts of each input (1: off). Teaches nothing and reads no label; it gives a network
            without time invariance of its own (the MLP) some at test time. The output is then
            log-probabilities, which serve as logits.
        compile: compile the network with ``torch.compile`` (its ``nn.Module.compile``, so
            checkpoints keep their keys) when the Trainer sets the model up; the first batch of
            each mode (training, evaluation) pays the compilation, and the network runs compiled
            at that batch's shape only: a batch of another shape (an uneven last batch: 160
            validation clips are 128 + 32) runs eagerly instead of compiling again. ``auto``:
            where the hardware policy says it can run and pays (``hardware.compile_pays``: CPUs
            with a C++ compiler; CUDA GPUs of compute capability 7.0 and newer, not yet measured
            there); ``true`` on an older GPU is refused in one line.
        channels_last: store a 2-D network's weights and activations as NHWC (nets with a
            ``set_channels_last`` method); ``auto``: where the hardware policy says it pays
            (``hardware.channels_last_pays``).
        teachers: checkpoints of our own models to distil from, ``{fold}`` standing for the test
            fold (``lightning_logs/sweeps/cnn/fold{fold}/checkpoints/last.ckpt``); each must hold
            out the same fold and validation split (``models.distill``). Their probabilities at
            ``distill_temperature``, averaged, are matched on the same augmented, mixed batch.
        distill_weight: the loss is ``(1 - w) * cross-entropy + w * distillation``.
        distill_temperature: softens teacher and student alike (Hinton et al.'s ``T``).
        encoder_lr_scale: with a pretrained encoder as the net (``models.encoders``): the encoder's
            parameters learn at ``lr * encoder_lr_scale``, the new head at ``lr`` (two optimiser
            parameter groups).
        freeze_encoder_epochs: with a pretrained encoder: keep it frozen (and in eval mode) for
            the first N epochs, training the head alone, then fine-tune it all.
    A pretrained encoder (a net with ``frontend``, ``encode`` and ``head``) owns its input: mixup
    mixes its ``frontend`` output; its published weights are read when ``fit`` starts
    (``load_pretrained``); a frozen one (``freeze: true``, a linear probe) trains its head on
    embeddings the DataModule computes once per clip (``use_embeddings``).
    Under DDP every metric, the losses included, is summed over ranks: each clip counts once.
    """

    def __init__(
        self,
        net: NetFactory,
        input_shape: tuple[int, int] = (128, 157),
        num_classes: int = 50,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        tta_shifts: int = 1,
        compile: bool | Literal["auto"] = False,
        channels_last: bool | Literal["auto"] = AUTO,
        teachers: list[str] | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 2.0,
        encoder_lr_scale: float = 1.0,
        freeze_encoder_epochs: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= distill_weight <= 1 or distill_temperature <= 0:
            raise ValueError(f"distill_weight must be in [0, 1] and distill_temperature > 0, "
                             f"got {distill_weight} and {distill_temperature}")
        self.save_hyperparameters()  # under LightningCLI: the config (class paths), so checkpoints rebuild the net
        self.net = net(*input_shape, num_classes)
        check_encoder_options(self.net, encoder_lr_scale, freeze_encoder_epochs)
        self.optimizer = optimizer
        self.example_input_array = torch.zeros(2, *input_shape)
        self.val_metrics = metric_collection(num_classes, "val/")
        self.test_metrics = metric_collection(num_classes, "test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion: torch.Tensor | None = None  # filled at test end, read by `sweep`
        self.compiled = False
        self.teacher_models: list[AudioClassifier] = []  # a plain list: never trained, never saved

    def setup(self, stage: str) -> None:
        """With a pretrained encoder, before ``fit``: check the DataModule hands it waveforms at its
        rate, read its published weights (a resumed fit then restores its own), and for a frozen
        encoder (a probe) have the DataModule serve its embeddings, computed once per clip."""
        if not is_encoder(self.net) or stage != "fit":
            return
        if getattr(self.net, "freeze", False) or self.hparams.get("freeze_encoder_epochs", 0):
            # a frozen encoder stays in eval mode on purpose (its BatchNorm statistics as published)
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
        datamodule = getattr(self.trainer, "datamodule", None)
        settings = getattr(datamodule, "settings", None)
        if settings is not None:
            check_encoder_input(self.net, settings)
        if hasattr(self.net, "load_pretrained"):
            self.net.load_pretrained()
        if getattr(self.net, "freeze", False) and hasattr(datamodule, "use_embeddings"):
            datamodule.use_embeddings(self.net, self.trainer.strategy.root_device)
            self.net.embedding_input = True
            self.example_input_array = torch.zeros(2, self.net.embedding_dim)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """A net with ``checkpoint_init_args()`` (the Hugging Face encoders: their configuration, no Hub
        name) is rebuilt from those ``init_args``, so that the checkpoint alone rebuilds it."""
        override = getattr(self.net, "checkpoint_init_args", None)
        net = checkpoint.get("hyper_parameters", {}).get("net")
        net = net.as_dict() if hasattr(net, "as_dict") else net  # a jsonargparse Namespace
        if callable(override) and isinstance(net, Mapping) and isinstance(net.get("init_args"), Mapping):
            checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"],  # copies: the live hparams stay
                                              "net": {**net, "init_args": {**net["init_args"], **override()}}}

    def on_train_epoch_start(self) -> None:
        freeze_for_epoch(self.net, self.current_epoch, self.hparams.get("freeze_encoder_epochs", 0))

    def on_fit_start(self) -> None:
        """Load the teachers for this fold, frozen, laid out and compiled like the student."""
        patterns = self.hparams.get("teachers") or []
        student_data = dict(getattr(self.trainer.datamodule, "hparams", {}))
        self.teacher_models = []
        for pattern in patterns:
            path = teacher_path(pattern, student_data.get("fold", 1))
            saved = torch.load(path, map_location="cpu", weights_only=False)
            check_teacher(path, saved.get("datamodule_hyper_parameters"), student_data)
            teacher = type(self).load_from_checkpoint(path, map_location=self.device).eval().requires_grad_(False)
            if hasattr(teacher.net, "set_channels_last"):
                teacher.net.set_channels_last(resolve_switch("channels_last", self.hparams.channels_last, self.device))
            if self.compiled:
                teacher.compile_net()
            self.teacher_models.append(teacher)

    @torch.no_grad()
    def teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' mean class probabilities at ``distill_temperature``, ``(batch, classes)``."""
        temperature = self.hparams.distill_temperature
        return torch.stack([(t(x).float() / temperature).softmax(-1) for t in self.teacher_models]).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or getattr(self.net, "embedding_input", False):  # no time axis to shift in embeddings
            return self.run_net(x)
        return shift_averaged(self.run_net, x, self.hparams.tta_shifts)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        smooth = self.hparams.label_smoothing
        if self.hparams.mixup_alpha > 0:
            lam = float(torch.distributions.Beta(self.hparams.mixup_alpha, self.hparams.mixup_alpha).sample())
            perm = torch.randperm(x.shape[0], device=x.device)
            if is_encoder(self.net) and not self.net.embedding_input:  # mix the encoder's own input, as PANNs does
                features = self.net.frontend(x)
                logits = self.net.classify_features(lam * features + (1 - lam) * features[perm])
            else:
                x = lam * x + (1 - lam) * x[perm]
                logits = self(x)
            loss = lam * F.cross_entropy(logits, y, label_smoothing=smooth) + (1 - lam) * F.cross_entropy(
                logits, y[perm], label_smoothing=smooth)
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=smooth)
        if self.teacher_models:
            distill = distillation_loss(logits, self.teacher_probs(x), self.hparams.distill_temperature)
            self.log("train/distill_loss", distill, on_step=False, on_epoch=True, sync_dist=True)
            weight = self.hparams.distill_weight
            loss = (1 - weight) * loss + weight * distill
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, on_step=False, on_epoch=True, prog_bar=True,
                      sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()
        self.val_loss.reset()

    def on_test_epoch_start(self) -> None:
        # Fresh state tensors in each process: ddp_spawn pickles the module through torch
        # multiprocessing, which puts CPU tensors in shared memory, so ranks would add up into one.
        for metric in (self.test_metrics, self.test_loss, self.test_confusion):
            metric.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.val_metrics.update(logits, y)
        self.log_dict(self.val_metrics, prog_bar=False)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.log("test/loss", self.test_loss)
        self.test_metrics.update(logits, y)
        self.test_confusion.update(logits, y)
        self.log_dict(self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()  # summed over DDP ranks; drawn by a callback
        self.test_confusion.reset()

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(-1)

    def parameter_groups(self) -> list[dict] | list[torch.nn.Parameter]:
        """Every parameter; with a pretrained encoder, two groups: the head's at the optimiser's
        ``lr`` and the encoder's with ``lr_scale`` ``encoder_lr_scale`` (applied in
        ``configure_optimizers``), or the head's alone for a frozen (probe) encoder."""
        return parameter_groups(self, self.net, self.hparams.get("encoder_lr_scale", 1.0))

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer(self.parameter_groups())
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.hparams.lr_schedule == "constant":
            return {"optimizer": optimizer}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
