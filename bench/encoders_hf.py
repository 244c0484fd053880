"""AST with random weights of the published size on the real clips: seconds per fine-tuning epoch,
peak memory, and the time to embed all 2,000 clips, with ``precision auto``.

    ESC50_ROOT=/path/to/ESC-50 python bench/encoders_hf.py --steps 3 --embed_clips 144

The weights are random (``ASTConfig()``'s defaults: the architecture of
``MIT/ast-finetuned-audioset-10-10-0.4593``, 86.6 M parameters, cut to 512 frames as
``configs/ast.yaml``), since the published ones cannot be fetched here: the times are the published
model's; no accuracy is measured.

- Fine-tuning: ``configs/ast.yaml``'s recipe (batch 48, Adam at 1e-5 on every parameter, SpecAugment,
  its precision ``auto``) through ``ESC50Trainer`` on fold 1's training split (1,440 clips, 30
  batches), stopped after ``--steps`` batches (``limit_train_batches``, no validation). The first batch
  is a warm-up and left out; an epoch is the median of the others times 30 (``extrapolated`` says
  so when fewer than 30 ran).
- Embedding: ``esc50-lightning embed``'s own loop (eval mode, no gradients, fp32, as the command and
  a probe's embedding cache run it), in batches of ``--embed_batch``, over the first ``--embed_clips``
  clips; scaled to 2,000 when fewer (``extrapolated``).
- Peak memory: the process's peak resident set (``ru_maxrss``) after each phase (the 2,000 decoded
  clips, 640 MB, included), and on CUDA ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import functools
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import data_root, write  # noqa: E402

TRAIN_CLIPS = 1440  # fold 1's training split with the default tenth held out for validation
ALL_CLIPS = 2000


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KB


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BatchTimes(Callback):
    """Wall seconds of each training batch (data transfer, front end, forward, backward, step)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self.times.append(time.perf_counter() - self.start)


def ast_factory(n_bins: int, n_frames: int, num_classes: int) -> torch.nn.Module:
    from esc50_lightning.models.encoders.hf import AST

    return AST(n_bins, n_frames, num_classes, weights=None)  # random, ASTConfig() defaults, 512 frames


def timed_fit(model, data, steps: int, batch_size: int, accelerator: str) -> tuple:
    """``steps`` training batches of one fold, timed one by one (the first is a warm-up), and the
    epoch of ``TRAIN_CLIPS`` extrapolated from their median: ``(figures, net, data, trainer)``."""
    from esc50_lightning.training.trainer import ESC50Trainer

    timer = BatchTimes()
    trainer = ESC50Trainer(accelerator=accelerator, max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
                           logger=False, enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    device = trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, datamodule=data)
    steady = timer.times[1:] or timer.times
    batches = math.ceil(TRAIN_CLIPS / batch_size)
    per_batch = statistics.median(steady)
    figures = {
        "precision": str(trainer.precision), "device": str(trainer.strategy.root_device),
        "batch_size": batch_size, "batches_per_epoch": batches, "batches_run": len(timer.times),
        "first_batch_s": round(timer.times[0], 2), "median_batch_s": round(per_batch, 3),
        "batch_s": [round(t, 3) for t in timer.times],
        "epoch_s": round(per_batch * batches, 1), "extrapolated": len(timer.times) < batches,
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.type == "cuda":
        figures["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return figures, model.net, data, trainer


def fine_tuning(root: Path, steps: int, batch_size: int, accelerator: str) -> tuple:
    from esc50_lightning.data import ESC50DataModule
    from esc50_lightning.models import AudioClassifier

    data = ESC50DataModule(root=str(root), fold=1, feature="waveform", sample_rate=16000, batch_size=batch_size)
    model = AudioClassifier(ast_factory, input_shape=data.feature_shape, num_classes=data.num_classes,
                            optimizer=functools.partial(torch.optim.Adam, lr=1e-5, weight_decay=5e-7,
                                                        betas=(0.95, 0.999)),
                            lr_schedule="cosine")
    return timed_fit(model, data, steps, batch_size, accelerator)


@torch.no_grad()
def embedding(net: torch.nn.Module, data, device: torch.device, clips: int, batch: int) -> dict:
    """``esc50-lightning embed``'s own loop (``embed_waves``: eval mode, no gradients, fp32, as the
    command and a probe's embedding cache run) over the first ``clips`` clips, timed."""
    from esc50_lightning.commands.embed import embed_waves

    net = net.to(device).eval()
    inputs = data.inputs[:clips]
    embed_waves(net, inputs[:2], device, batch)  # warm-up, not timed
    synchronize(device)
    start = time.perf_counter()
    embed_waves(net, inputs, device, batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"precision": "32-true", "clips_timed": len(inputs), "batch_size": batch, "seconds_timed": round(seconds, 2),
            "clips_per_s": round(len(inputs) / seconds, 2),
            "all_2000_clips_s": round(seconds * ALL_CLIPS / len(inputs), 1), "extrapolated": len(inputs) < ALL_CLIPS,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="training batches to run (the first is a warm-up)")
    parser.add_argument("--batch_size", type=int, default=48, help="configs/ast.yaml's")
    parser.add_argument("--embed_clips", type=int, default=ALL_CLIPS, help="clips to embed (2,000: all)")
    parser.add_argument("--embed_batch", type=int, default=48)
    parser.add_argument("--accelerator", default="cpu", help="cpu (the issue's measurement) or auto")
    parser.add_argument("--name", default="encoders_hf")
    args = parser.parse_args()
    root = data_root()
    torch.manual_seed(0)
    train, net, data, trainer = fine_tuning(root, args.steps, args.batch_size, args.accelerator)
    print(f"AST fine-tuning: {train['median_batch_s']} s a batch of {args.batch_size}, epoch of {TRAIN_CLIPS} "
          f"clips {train['epoch_s']} s{' (extrapolated)' if train['extrapolated'] else ''}, "
          f"peak RSS {train['peak_rss_mb']} MB")
    data.load_all()
    embed = embedding(net, data, trainer.strategy.root_device, args.embed_clips,
                      args.embed_batch)
    print(f"AST embedding: {embed['clips_per_s']} clips/s, all 2,000 clips {embed['all_2000_clips_s']} s"
          f"{' (extrapolated)' if embed['extrapolated'] else ''}, peak RSS {embed['peak_rss_mb']} MB")
    params = sum(p.numel() for p in net.parameters())
    path = write(args.name, {"encoders": {"AST": {
        "weights": "random (ASTConfig() defaults: the published MIT/ast-finetuned-audioset-10-10-0.4593's size)",
        "max_length": 512, "parameters": params, "fine_tuning": train, "embedding": embed}}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
