"""``esc50-lightning sweep``: fit + test once per fold, resumable, aggregated into one JSON.

Each fold trains a fresh model on the other four folds and is tested with its final weights;
nothing is ever selected on the test fold. Folds live in ``<sweep_dir>/fold<K>/`` (TensorBoard
events, ``checkpoints/last.ckpt``, ``result.json``): a finished fold is skipped, an interrupted
one resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Timer

from esc50_lightning.errors import ESC50Error
from esc50_lightning.results import summarize_run, write_json_atomic, write_results


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="esc50-lightning sweep",
        description="Cross-validate a config over the official folds. Every `fit` option is "
        "accepted too (e.g. --config, --trainer.max_epochs, --data.root).",
    )
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--results", help="also write the aggregated JSON (and .md) here")
    parser.add_argument("--name", help="sweep name (default: the config file's stem)")
    parser.add_argument("--sweep_dir", help="default: lightning_logs/sweeps/<name>")
    args, rest = parser.parse_known_args(argv)
    bad = [f for f in args.folds if f not in range(1, 6)]
    if bad:
        raise ESC50Error(f"--folds must be within 1-5, got {bad}")
    return args, rest


def config_name(rest: list[str]) -> str:
    for i, arg in enumerate(rest):
        if arg == "--config" and i + 1 < len(rest):
            return Path(rest[i + 1]).stem
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).stem
    return "sweep"


def counted_accuracy(confusion: list[list[int]]) -> float:
    """Accuracy as correct / total from the confusion matrix's counts: exact, where torchmetrics'
    float32 value of 800/2000 reads 0.39999999."""
    counts = np.asarray(confusion)
    return float(np.trace(counts) / counts.sum())


def run_fold(rest: list[str], fold: int, fold_dir: Path) -> dict:
    """Fit and test one fold (resuming from ``last.ckpt``); return and save its result."""
    from esc50_lightning.cli import ESC50CLI

    logger = [
        "--trainer.logger.class_path=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={fold_dir.parent}",
        "--trainer.logger.init_args.name=",
        f"--trainer.logger.init_args.version={fold_dir.name}",
    ]
    cli = ESC50CLI(args=[*rest, f"--data.fold={fold}", *logger], run=False)
    timer = Timer()  # saved in every checkpoint: a resumed fold reports its whole training time
    cli.trainer.callbacks.append(timer)
    last = fold_dir / "checkpoints" / "last.ckpt"
    resumed = last.exists()
    if resumed:
        print(f"fold {fold}: resuming from {last}")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(last) if resumed else None)
    train_seconds = timer.time_elapsed("train")
    if cli.trainer.interrupted:
        raise KeyboardInterrupt
    (metrics,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    result = {
        "fold": fold,
        "accuracy": counted_accuracy(cli.model.confusion.tolist()),
        "precision": metrics["test/precision"],
        "recall": metrics["test/recall"],
        "f1": metrics["test/f1"],
        "train_seconds": round(train_seconds, 1),
        "epochs": cli.trainer.current_epoch,
        "resumed": resumed,
        "confusion_matrix": cli.model.confusion.tolist(),
        "class_names": cli.datamodule.class_names,
        "config": json.loads(cli.parser.dump(cli.config, format="json", skip_link_targets=False)),
        "dataset": {"root": str(cli.datamodule.root), "sample_rate": cli.datamodule.sample_rate,
                    "clips": len(cli.datamodule.meta)},
    }
    write_json_atomic(result, fold_dir / "result.json")
    return result


def main(argv: list[str]) -> None:
    args, rest = parse(argv)
    name = args.name or config_name(rest)
    sweep_dir = Path(args.sweep_dir or Path("lightning_logs") / "sweeps" / name)
    results = []
    for fold in args.folds:
        fold_dir = sweep_dir / f"fold{fold}"
        done = fold_dir / "result.json"
        if done.exists():
            print(f"sweep {name}: fold {fold} already done ({done}), skipped")
            results.append(json.loads(done.read_text()))
            continue
        print(f"sweep {name}: fold {fold} (test fold {fold}, training on the other four)")
        results.append(run_fold(rest, fold, fold_dir))
        print(f"sweep {name}: fold {fold} accuracy {results[-1]['accuracy']:.4f}")
    confusion = np.sum([r["confusion_matrix"] for r in results], axis=0).astype(int)
    folds = [{"fold": r["fold"], "accuracy": counted_accuracy(r["confusion_matrix"]),
              **{k: r[k] for k in ("precision", "recall", "f1", "train_seconds")}} for r in results]
    run = summarize_run(name, folds)
    extra = {"class_names": results[0]["class_names"], "confusion_matrix": confusion.tolist(),
             "total_train_seconds": round(sum(f["train_seconds"] for f in folds), 1)}
    targets = [sweep_dir / "results.json"] + ([Path(args.results)] if args.results else [])
    for target in targets:
        table = write_results(target, "sweep", results[0]["config"], results[0]["dataset"], [run], extra)
    print(table)
    print(f"sweep {name}: results in {', '.join(map(str, targets))}")
