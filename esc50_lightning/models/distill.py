"""Knowledge distillation from our own checkpoints: which teacher files a fold may use, and the loss.

A teacher is a model of ours trained from scratch on the same fold's training clips (a finished
sweep, its checkpoint named with ``{fold}``). Its checkpoint's DataModule hyperparameters must
show the same held-out fold and validation split, so no teacher saw a clip the student is tested
or selected on, and the same spectrogram settings, so it reads the student's input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.pipeline import FrontendSettings

SPLIT_KEYS = ("fold", "val_strategy", "val_fraction", "seed")
INPUT_KEYS = FrontendSettings.names()


def teacher_path(pattern: str, fold: int) -> Path:
    """``pattern`` with ``{fold}`` replaced: e.g. ``lightning_logs/sweeps/cnn/fold{fold}/checkpoints/last.ckpt``."""
    path = Path(pattern.replace("{fold}", str(fold)))
    if not path.is_file():
        raise ESC50Error(f"teacher checkpoint {path} not found (fold {fold}): train the teacher on this fold first")
    return path


def check_teacher(path: Path, teacher_data: dict | None, student_data: dict) -> None:
    """Raise unless the teacher held out the same fold and validation clips and read the same input."""
    if not teacher_data:
        raise ESC50Error(f"teacher checkpoint {path} has no DataModule hyperparameters: "
                         "cannot tell which fold it held out")
    for keys, why in ((SPLIT_KEYS, "it may have trained on this run's test or validation clips"),
                      (INPUT_KEYS, "it reads a different spectrogram")):
        for key in keys:
            if teacher_data.get(key) != student_data.get(key):
                raise ESC50Error(f"teacher checkpoint {path} has data.{key}={teacher_data.get(key)!r}, "
                                 f"this run {student_data.get(key)!r}: {why}")


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: ``T^2 * KL(teacher || student)`` at temperature ``T``, where
    ``teacher_probs`` ``(batch, classes)`` are already softened (the ensemble's mean at ``T``)."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(log_student, teacher_probs.float(), reduction="batchmean") * temperature**2
