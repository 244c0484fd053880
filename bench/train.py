"""Training throughput per model config and precision: seconds per epoch, clips per second, the
share of each epoch spent outside forward + backward + optimiser step (data handling, logging,
metrics), and the time from calling ``fit`` to the first training batch (warm caches).

    ESC50_ROOT=/path/to/ESC-50 python bench/train.py [--configs mlp conv1d cnn] [--epochs 3]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write  # noqa: E402

from esc50_lightning.training import ESC50CLI  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class EpochTimer(Callback):
    """Wall time per epoch and, within it, time between batch start and batch end hooks
    (forward, loss, backward, optimiser step). Everything else is data and bookkeeping."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float, int]] = []
        self.fit_called = self.first_batch = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self.t0, self.inside, self.clips = time.perf_counter(), 0.0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.b0 = time.perf_counter()
        if self.first_batch is None:
            self.first_batch = self.b0 - self.fit_called

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.inside += time.perf_counter() - self.b0
        self.clips += len(batch[1])

    def on_train_epoch_end(self, trainer, module) -> None:
        self.epochs.append((time.perf_counter() - self.t0, self.inside, self.clips))


def measure(config: str, precision: str, epochs: int, work: Path, overrides: list[str]) -> dict:
    cli = ESC50CLI(args=[f"--config={CONFIGS / config}.yaml", f"--trainer.max_epochs={epochs}", *overrides,
                         f"--trainer.precision={precision}", "--data.val_strategy=none",
                         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                         f"--trainer.default_root_dir={work}"], run=False)
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    cli.datamodule.load_all()  # warm the caches before timing `fit` (first run computes features)
    cli.datamodule.meta = None
    timer.fit_called = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    timed = timer.epochs[1:]  # the first epoch warms up allocators and kernels
    seconds = statistics.median(e[0] for e in timed)
    outside = statistics.median(1 - e[1] / e[0] for e in timed)
    params = sum(p.numel() for p in cli.model.parameters())
    with FlopCounterMode(display=False) as flops:
        cli.model.net.eval().float().to("cpu")(torch.zeros(1, *cli.datamodule.feature_shape))
    return {"config": config, "precision": precision, "resolved_precision": str(cli.trainer.precision),
            "overrides": overrides, "seconds_per_epoch": round(seconds, 3),
            "clips_per_second": round(timed[0][2] / seconds, 1), "outside_forward_backward_share": round(outside, 4),
            "first_batch_after_fit_seconds": round(timer.first_batch, 3), "parameters": params,
            "macs_per_clip": flops.get_total_flops() // 2, "input_shape": list(cli.datamodule.feature_shape),
            "epoch_runs": [round(e[0], 3) for e in timer.epochs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["mlp", "conv1d", "cnn"])
    parser.add_argument("--precisions", nargs="+", default=["auto"],
                        help="auto (the hardware policy), bf16-mixed, 32-true, ...")
    parser.add_argument("--epochs", type=int, default=4, help="the first is warm-up; median of the rest")
    parser.add_argument("--overrides", default="", help="command-line overrides for every run, one string")
    parser.add_argument("--name", default="train", help="result file: bench/results/NAME.json")
    args = parser.parse_args()
    data_root()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for config in args.configs:
            for precision in args.precisions:
                row = measure(config, precision, args.epochs, Path(work), shlex.split(args.overrides))
                rows.append(row)
                outside = 100 * row["outside_forward_backward_share"]
                print(f"{config:8s} {precision:10s} -> {row['resolved_precision']:10s} "
                      f"{row['seconds_per_epoch']:7.2f} s/epoch "
                      f"{row['clips_per_second']:8.1f} clips/s  outside fwd/bwd {outside:.1f}%"
                      f"  first batch {row['first_batch_after_fit_seconds']:.2f} s")
    for config in args.configs:
        by = {r["precision"]: r for r in rows if r["config"] == config}
        if "bf16-mixed" in by and "32-true" in by:
            speedup = by["32-true"]["seconds_per_epoch"] / by["bf16-mixed"]["seconds_per_epoch"]
            by["bf16-mixed"]["speedup_over_fp32"] = round(speedup, 2)
            print(f"{config}: bf16-mixed is {speedup:.2f}x faster than fp32")
    print(f"wrote {write(args.name, {'rows': rows})}")


if __name__ == "__main__":
    main()
