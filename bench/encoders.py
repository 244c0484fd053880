"""PANNs Cnn6, Cnn10, Cnn14 and Cnn14_16k with random weights of the published sizes on the real clips:
seconds per fine-tuning epoch, peak memory, and the time to embed all 2,000 clips, with ``precision auto``.

    ESC50_ROOT=/path/to/ESC-50 python bench/encoders.py --steps 8 --embed_clips 240

The weights are random (the published ones cannot be fetched here), of the published architectures
and sizes: the times are the published models'; no accuracy is measured.

- Fine-tuning: ``configs/panns_cnn14.yaml``'s recipe (batch 32, Adam with amsgrad at 1e-3 for the head
  and 1e-4 for the encoder, mixup 1.0 on the log-mel, PANNs' SpecAugment, ``precision auto``) with
  each ``--models`` network, at its own rate (32 kHz; 16 kHz for Cnn14_16k), through ``ESC50Trainer``
  on fold 1's training split (1,440 clips, 45 batches), stopped after ``--steps`` batches
  (``limit_train_batches``, no validation). The first batch is a warm-up and left out; an epoch is
  the median of the others times 45 (``extrapolated`` says so when fewer than 45 ran).
- Embedding: ``esc50-lightning embed``'s own loop (eval mode, no gradients, fp32, as the command and
  a probe's embedding cache run it), in batches of ``--embed_batch``, over the first
  ``--embed_clips`` clips; scaled to 2,000 when fewer (``extrapolated``).
- Peak memory: the process's peak resident set (``ru_maxrss``) after each phase (the decoded clips at
  the model's rate included: 1.3 GB at 32 kHz), each model in a process of its own, and on CUDA
  ``torch.cuda.max_memory_allocated``.

The timing helpers are ``bench/encoders_hf.py``'s (AST's measurement), so both encoders' figures are
made the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import data_root, write  # noqa: E402
from bench.encoders_hf import ALL_CLIPS, TRAIN_CLIPS, embedding, timed_fit  # noqa: E402

MODELS = ("Cnn6", "Cnn10", "Cnn14", "Cnn14_16k")


def fine_tuning(root: Path, model_name: str, steps: int, batch_size: int, accelerator: str) -> tuple:
    from esc50_lightning.data import ESC50DataModule
    from esc50_lightning.models import AudioClassifier
    from esc50_lightning.models.encoders import PANNS_MODELS, PANNs

    rate = PANNS_MODELS[model_name].sample_rate
    data = ESC50DataModule(root=str(root), fold=1, feature="waveform", sample_rate=rate, batch_size=batch_size)
    model = AudioClassifier(functools.partial(PANNs, model=model_name, weights=None),
                            input_shape=data.feature_shape, num_classes=data.num_classes,
                            optimizer=functools.partial(torch.optim.Adam, lr=1e-3, amsgrad=True),
                            encoder_lr_scale=0.1, mixup_alpha=1.0, lr_schedule="cosine", warmup_epochs=1)
    figures, net, data, trainer = timed_fit(model, data, steps, batch_size, accelerator)
    return {**figures, "sample_rate": rate}, net, data, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=4, help="training batches to run (the first is a warm-up)")
    parser.add_argument("--batch_size", type=int, default=32, help="configs/panns_cnn14.yaml's")
    parser.add_argument("--embed_clips", type=int, default=ALL_CLIPS, help="clips to embed (2,000: all)")
    parser.add_argument("--embed_batch", type=int, default=32)
    parser.add_argument("--accelerator", default="cpu", help="cpu (the issue's measurement) or auto")
    parser.add_argument("--name", default="encoders")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one model, figures to this JSON file
    args = parser.parse_args()
    root = data_root()
    if args.child is None:  # each model in a process of its own: its peak memory is its own
        results = {}
        for name in args.models:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "figures.json"
                subprocess.run([sys.executable, __file__, *child_args(args, name), "--child", str(out)], check=True)
                results[name] = json.loads(out.read_text())
        path = write(args.name, {"encoders": results})
        print(f"wrote {path}")
        return
    results = {}
    for name in args.models:
        torch.manual_seed(0)
        train, net, data, trainer = fine_tuning(root, name, args.steps, args.batch_size, args.accelerator)
        print(f"{name} fine-tuning: {train['median_batch_s']} s a batch of {args.batch_size}, epoch of "
              f"{TRAIN_CLIPS} clips {train['epoch_s']} s{' (extrapolated)' if train['extrapolated'] else ''}, "
              f"peak RSS {train['peak_rss_mb']} MB")
        embed = embedding(net, data, trainer.strategy.root_device, args.embed_clips,
                          args.embed_batch)
        print(f"{name} embedding: {embed['clips_per_s']} clips/s, all 2,000 clips {embed['all_2000_clips_s']} s"
              f"{' (extrapolated)' if embed['extrapolated'] else ''}, peak RSS {embed['peak_rss_mb']} MB")
        results[name] = {"weights": "random, of the published architecture and size (no published weights here)",
                         "parameters": sum(p.numel() for p in net.parameters()),
                         "embedding_dim": net.embedding_dim, "fine_tuning": train, "embedding": embed}
    Path(args.child).write_text(json.dumps(results[args.models[0]]))


def child_args(args: argparse.Namespace, name: str) -> list[str]:
    return ["--models", name, "--steps", str(args.steps), "--batch_size", str(args.batch_size),
            "--embed_clips", str(args.embed_clips), "--embed_batch", str(args.embed_batch),
            "--accelerator", args.accelerator]


if __name__ == "__main__":
    main()
