"""``PredictionCSV``: what ``predict`` writes, one row per clip of the fold it predicts.

Lightning's ``BasePredictionWriter`` hands over the probabilities of every batch (``predict_step``)
with the positions of the batch's clips; the DataModule's split and metadata turn those into file,
fold and target. Under DDP each rank writes the clips it predicted into a file of its own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from esc50_lightning.atomic import write_text_atomic
from esc50_lightning.training.report import shown

TOP_K = 5
FILENAME = "predictions.csv"


def default_path(trainer: Trainer) -> Path:
    """``predictions.csv`` in the run folder (``lightning_logs/version_<N>/``), else the root dir."""
    return Path(trainer.log_dir or trainer.default_root_dir) / FILENAME


class PredictionCSV(BasePredictionWriter):
    """Writes ``file, fold, target, predicted, probability, class_1, prob_1, ... class_5, prob_5``
    (class names; ``probability`` is the predicted class's) to ``path`` (default: ``default_path``)."""

    def __init__(self, path: str | None = None, top_k: int = TOP_K) -> None:
        super().__init__(write_interval="epoch")
        self.path, self.top_k = path, top_k
        self.written: Path | None = None
        self.summary = ""

    def rank_path(self, trainer: Trainer) -> Path:
        path = Path(self.path) if self.path else default_path(trainer)
        return path if trainer.world_size == 1 else path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[torch.Tensor],
                           batch_indices: Sequence) -> None:
        dm = trainer.datamodule
        probs = torch.cat([p.float().cpu() for p in predictions]) if predictions else torch.zeros(0, dm.num_classes)
        positions = [i for batch in (batch_indices[0] if batch_indices else []) for i in batch]
        if len(positions) != len(probs):  # no index-tracking sampler: the loader's order is the split's
            positions = list(range(len(probs)))
        clips = dm.meta.iloc[dm.index["test"][positions]]
        names = dm.class_names
        k = min(self.top_k, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        header = ["file", "fold", "target", "predicted", "probability"]
        header += [f"{what}_{n}" for n in range(1, k + 1) for what in ("class", "prob")]
        rows = []
        for (_, clip), p, i in zip(clips.iterrows(), top_p.tolist(), top_i.tolist()):
            row = [clip["filename"], int(clip["fold"]), names[int(clip["target"])], names[i[0]], f"{p[0]:.4f}"]
            rows.append(row + [cell for c, q in zip(i, p) for cell in (names[c], f"{q:.4f}")])
        path = self.rank_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, to_csv([header, *rows]))
        correct = sum(row[2] == row[3] for row in rows)
        fold = ", ".join(sorted({str(row[1]) for row in rows})) or "none"
        self.written = path
        self.summary = (f"predict: {len(rows)} clips of fold {fold} -> {shown(path)} (file, fold, target, predicted, "
                        f"top {k} with probabilities; {correct} of {len(rows)} right)")


def to_csv(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()
