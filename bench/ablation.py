"""Each augmentation's contribution: train a config on one fold with one ingredient removed at a
time (and one candidate added), and report final validation accuracy (the split carved from the
training folds) and test accuracy. Every variant is a one-fold ``sweep``, so an interrupted
ablation resumes; the "full" variant is the same run as ``curve.py``'s budget of equal length.

    ESC50_ROOT=/path/to/ESC-50 python bench/ablation.py --config configs/cnn.yaml --epochs 40
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, one_fold_run, weights_accuracies, write  # noqa: E402

from esc50_lightning.figures.curves import read_scalars  # noqa: E402
from esc50_lightning.training.sweep import checkpoint_pattern  # noqa: E402

EMA = ["--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging", "--trainer.callbacks.decay=0.998"]
WARMUP_EMA = ["--trainer.callbacks+=esc50_lightning.training.ema.WarmupEMA", "--trainer.callbacks.decay=0.99"]
VARIANTS = {
    "full": [],
    # candidates to add:
    "plus_crop": ["--data.augment.crop_seconds=3"],
    "plus_stretch": ["--data.augment.time_stretch=0.2", "--data.augment.freq_shift=3"],
    "no_mixup": ["--model.mixup_alpha=0"],
    "no_specaugment": ["--data.augment.freq_masks=0", "--data.augment.time_masks=0"],
    "no_time_shift": ["--data.augment.time_shift=0"],
    "no_gain": ["--data.augment.gain_db=0"],
    "no_augmentation": ["--model.mixup_alpha=0", "--data.augment.freq_masks=0", "--data.augment.time_masks=0",
                        "--data.augment.time_shift=0", "--data.augment.gain_db=0"],
    # training levers (issue 16). "ema": Lightning's EMA of the weights ("wema": ours, with a
    # warm-up); validated and tested with the averaged weights, while the raw weights of the same
    # trajectory stay in the checkpoint and are evaluated too. An EMA changes nothing in training,
    # so the other levers carry one: their raw weights are the lever alone.
    "ema": EMA,
    "wema": WARMUP_EMA,  # the plain CNN with WarmupEMA 0.99: the undistilled half of a distillation pair
    "wema_residual": [*WARMUP_EMA, "--model.net.init_args.residual=true"],
    "wema_freq_aware": [*WARMUP_EMA, "--model.net.init_args.freq_aware=true"],  # per-band norm + band position
    "wema_hop640": [*WARMUP_EMA, "--data.hop_length=640", "--data.augment.time_width=12"],  # half the frames
    # the network per FLOP and the input resolution: one more block (512 channels at 4 x 15 after
    # four pools; 4.8 M parameters against 1.2 M), 1.5x the width (2.7 M), twice the mel bands (the
    # frequency masks keep their share of the bands). Training times against "wema": README, "Towards 0.90"
    "wema_deeper": [*WARMUP_EMA, "--model.net.init_args.channels=[32,64,128,256,512]"],
    "wema_wider": [*WARMUP_EMA, "--model.net.init_args.channels=[48,96,192,384]"],
    "wema_mels128": [*WARMUP_EMA, "--data.n_mels=128", "--data.augment.freq_width=16"],
    # the same epochs in twice the optimizer steps (batch 16): more updates for the same FLOPs
    "wema_hop640_batch16": [*WARMUP_EMA, "--data.hop_length=640", "--data.augment.time_width=12",
                            "--data.batch_size=16"],
    # self-distillation: the plain CNN taught by the residual CNN trained as above, same fold,
    # same length ({epochs}), averaged weights (run wema_residual first)
    "wema_distill_residual": [*WARMUP_EMA, "--model.teachers+="
                              + checkpoint_pattern("lightning_logs/bench/cnn/{epochs}ep/wema_residual")],
    # the plain CNN taught by the 320-epoch sweep's model of the same fold (bench/sweeps/cnn_320;
    # its checkpoints are not committed: train that fold first)
    "wema_distill_cnn320": [*WARMUP_EMA, "--model.teachers+=" + checkpoint_pattern("bench/sweeps/cnn_320")],
    # taught by the mean of two long runs of the same fold: the 320-epoch sweep's model and the
    # wide sweep's (bench/sweeps/cnn_wide; bench/ensemble.py scores the pair without a student)
    "wema_distill_ensemble": [*WARMUP_EMA, "--model.teachers+=" + checkpoint_pattern("bench/sweeps/cnn_320"),
                              "--model.teachers+=" + checkpoint_pattern("bench/sweeps/cnn_wide")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cnn.yaml")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--name", help="results file name (default: <config>_ablation)")
    args = parser.parse_args()
    data_root()
    name = Path(args.config).stem
    rows = []
    for variant in args.variants:
        overrides = [arg.replace("{epochs}", str(args.epochs)) for arg in VARIANTS[variant]]
        fold_dir = one_fold_run(args.config, args.fold, args.epochs, variant, tuple(overrides))
        result = fold_dir.result()
        val = read_scalars(fold_dir.path).get("val/acc")
        rows.append({"variant": variant, "overrides": overrides, "val_accuracy": float(val[-1]),
                     "test_accuracy": result["accuracy"], "train_seconds": result["train_seconds"]})
        weights = weights_accuracies(fold_dir)
        if "averaged" in weights:  # the same trajectory's raw weights, evaluated alike: the pair
            rows[-1]["weights"] = weights
        print(f"{variant:16s} val {rows[-1]['val_accuracy']:.3f}  test {result['accuracy']:.3f}")
    figures = {"config": args.config, "fold": args.fold, "epochs": args.epochs, "rows": rows}
    print(f"wrote {write(args.name or f'{name}_ablation', figures)}")


if __name__ == "__main__":
    main()
