"""``AudioClassifier``: the one LightningModule. Loss, mixup, metrics, optimiser and schedule;
the network itself is any ``nn.Module`` built from ``(n_bins, n_frames, num_classes)``."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import (
    AUTO,
    TRITON_MIN_CAPABILITY,
    compile_refusal,
    detect,
    resolve_switch,
    use_tensor_cores,
)
from esc50_lightning.models.distill import check_teacher, distillation_loss, teacher_path
from esc50_lightning.models.encoders.base import is_encoder

NetFactory = Callable[[int, int, int], nn.Module]
log = logging.getLogger("esc50_lightning")
# how the network is compiled: one static graph per mode (training, evaluation), at the shape of that
# mode's first batch; a batch of any other shape runs eagerly (``AudioClassifier.run_net``)
COMPILE_OPTIONS: dict = {"dynamic": False}


def shift_averaged(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, shifts: int) -> torch.Tensor:
    """``net(x)``, or with ``shifts > 1`` the log of its class probabilities averaged over
    ``shifts`` circular time shifts of ``x`` (``(batch, bins, frames)``), evenly spaced."""
    if shifts <= 1:
        return net(x)
    frames = x.shape[-1]
    probs = [net(torch.roll(x, k * frames // shifts, -1)).float().softmax(-1) for k in range(shifts)]
    return torch.stack(probs).mean(0).clamp_min(1e-12).log()


def metric_collection(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy (micro) and macro precision, recall and F1 over all classes."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class AudioClassifier(L.LightningModule):
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
        if (encoder_lr_scale != 1 or freeze_encoder_epochs) and not is_encoder(self.net):
            raise ESC50Error(f"model.encoder_lr_scale and model.freeze_encoder_epochs apply to pretrained encoders "
                             f"(models.encoders); {type(self.net).__name__} has none")
        if encoder_lr_scale < 0 or freeze_encoder_epochs < 0:
            raise ValueError(f"encoder_lr_scale and freeze_encoder_epochs must be >= 0, "
                             f"got {encoder_lr_scale} and {freeze_encoder_epochs}")
        self.optimizer = optimizer
        self.example_input_array = torch.zeros(2, *input_shape)
        self.val_metrics = metric_collection(num_classes, "val/")
        self.test_metrics = metric_collection(num_classes, "test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion: torch.Tensor | None = None  # filled at test end, read by `sweep`
        self.compiled = False
        self.teacher_models: list[AudioClassifier] = []  # a plain list: never trained, never saved

    def configure_model(self) -> None:
        # Only under a Trainer: load_from_checkpoint calls this hook too, and a loaded model is
        # for inference or export, where compiling costs ~20 s and TorchScript/ONNX cannot trace it.
        if self._trainer is None or self.compiled:
            return
        device = self.trainer.strategy.root_device
        use_tensor_cores(device)  # in the process that trains (spawned DDP workers too)
        if hasattr(self.net, "set_channels_last"):
            self.net.set_channels_last(self.hardware_switches(device)["channels_last"])
        if self.wants_compile(device):
            self.compile_net()  # fit then test: compile once

    def wants_compile(self, device: torch.device) -> bool:
        """Whether to compile on ``device``: ``compile`` resolved by the hardware policy; where
        compiling cannot run, ``auto`` says why in one log line and ``true`` is refused."""
        requested = self.hparams.compile
        refusal = compile_refusal(device) if requested == AUTO or torch.device(device).type == "cuda" else None
        if requested == AUTO:
            if refusal is not None:
                log.info(f"compile off: {refusal}")
            return refusal is None
        if requested and refusal is not None:
            raise ESC50Error(f"--model.compile true: {refusal}; use --model.compile auto or false")
        return bool(requested)

    def hardware_switches(self, device: torch.device | str) -> dict[str, bool | None]:
        """What ``configure_model`` sets on ``device``: ``compile`` (as ``wants_compile`` decides
        it, without a word) and ``channels_last`` (``None`` for a network without that layout).
        What a run records it trained with (``training.settings.ran_with``)."""
        layout = None
        if hasattr(self.net, "set_channels_last"):
            requested = self.hparams.get("channels_last", False)  # absent from older checkpoints
            layout = resolve_switch("channels_last", requested, device)
        requested = self.hparams.compile
        if requested != AUTO:
            compiled = bool(requested)
        elif torch.device(device).type == "cuda" and not torch.cuda.is_initialized():
            # asked before the Trainer starts: NVML's word on the GPUs, as hardware.detect reads
            # them, so that a fork-based strategy (ddp_fork) still finds CUDA untouched
            capability = detect("cuda").capability
            compiled = capability is None or capability >= TRITON_MIN_CAPABILITY
        else:
            compiled = compile_refusal(device) is None
        return {"compile": compiled, "channels_last": layout}

    def compile_net(self) -> None:
        """Compile the network in place (``nn.Module.compile``: its checkpoint keys stay), one
        static graph per mode (``COMPILE_OPTIONS``; other shapes run eagerly, ``run_net``)."""
        self.net.compile(**COMPILE_OPTIONS)
        self.compiled = True
        self.compiled_shapes: dict[bool, tuple[int, ...]] = {}  # training mode -> the shape compiled

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """``self.net(x)``. Compiled, the first batch of each mode fixes the shape it runs
        compiled at; a batch of any other shape runs eagerly rather than compiling a graph of
        its own (an uneven last batch, a test fold of 400 at batch 128, a crop)."""
        if self.compiled:
            shape = self.compiled_shapes.setdefault(self.net.training, tuple(x.shape))
            if tuple(x.shape) != shape:
                with torch.compiler.set_stance("force_eager"):
                    return self.net(x)
        return self.net(x)

    @property
    def example_input_array(self) -> torch.Tensor | None:
        """The model summary's example input; none once the network is compiled, where the
        summary's forward pass would compile a throwaway graph for its batch of 2."""
        return None if getattr(self, "compiled", False) else self._example_input_array

    @example_input_array.setter
    def example_input_array(self, example: torch.Tensor | None) -> None:
        self._example_input_array = example

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
            name = type(self.net).__name__
            if settings.feature != "waveform":
                raise ESC50Error(f"{name} reads the waveform: set --data.feature waveform (not {settings.feature})")
            if settings.sample_rate != self.net.sample_rate:
                raise ESC50Error(f"{name} was pretrained at {self.net.sample_rate} Hz: set --data.sample_rate "
                                 f"{self.net.sample_rate} (not {settings.sample_rate})")
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
        epochs = self.hparams.get("freeze_encoder_epochs", 0)
        if epochs and is_encoder(self.net) and not getattr(self.net, "freeze", False):
            self.net.set_encoder_frozen(self.current_epoch < epochs)

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
        if not is_encoder(self.net):
            return list(self.parameters())
        head = list(self.net.head_parameters())
        if getattr(self.net, "freeze", False):
            return [{"params": head, "name": "head"}]
        return [{"params": head, "name": "head"},
                {"params": list(self.net.encoder_parameters()), "name": "encoder",
                 "lr_scale": float(self.hparams.get("encoder_lr_scale", 1.0))}]

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
