"""``esc50-lightning classical``: feature x pooling x model x C x norm, cross-validated.

The grid engine (``classical.grid``) computes each feature configuration once (cached), pools it
over time and cross-validates over the official folds; finished rows are kept in
``<results>.rows.jsonl``, so an interrupted grid resumes where it stopped. The headline is the row
chosen, per test fold, on that fold's validation split (``--data.val_fraction``, ``--data.seed``: the
split ``fit`` carves); the best row on the test folds is shown beside it as an optimistic upper bound.
This command parses the grid, writes the result JSON and table, and one TensorBoard HParams row per
grid row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from esc50_lightning.classical.embeddings import embeddings_grid
from esc50_lightning.classical.estimators import MODELS
from esc50_lightning.classical.grid import Grid, run_grid
from esc50_lightning.classical.selection import best_on_test, select_on_validation
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.provenance import cpu_steal_share, machine_info
from esc50_lightning.results import write_results

# val_fraction and seed stay: they name the validation split each fold's row is chosen on
TRAINING_ONLY = {"fold", "batch_size", "val_strategy", "augment", "num_workers"}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="esc50-lightning classical", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(ESC50DataModule, "data", skip=TRAINING_ONLY)
    parser.add_argument("--features", type=dict[str, dict], default={"log_mel": {"feature": "log_mel"}},
                        help="name -> DataModule overrides (feature kind, n_fft, hop_length, ...)")
    parser.add_argument("--poolings", type=list[str], default=["mean", "max"],
                        help="mean, max, meanstd, stats or statistics joined by '+'")
    parser.add_argument("--models", type=list[str], default=list(MODELS),
                        help="svm, logreg, rf; with _cv: hyper-parameters searched in the training folds")
    parser.add_argument("--C", type=list[float], default=[1.0], help="inverse regularisation (the seed's lambda)")
    parser.add_argument("--norm", type=list[bool], default=[True], help="standardise features first")
    parser.add_argument("--params", type=dict[str, dict], default={}, help="model -> constructor arguments")
    parser.add_argument("--search", type=dict[str, dict], default={}, help="model -> grid for the _cv variant")
    parser.add_argument("--embeddings", type=str | None, default=None,
                        help="an `esc50-lightning embed` file: the grid's models on those embeddings, not --features")
    parser.add_argument("--n_jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=str | None, default=None, help="JSON to write (and .md next to it)")
    parser.add_argument("--tensorboard", type=str, default="lightning_logs/classical/tensorboard",
                        help="TensorBoard log dir: one HParams row per grid row ('' for none)")
    return parser


def main(argv: list[str]) -> None:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    config = json.loads(parser.dump(cfg, format="json"))
    config.pop("config", None)
    config.pop("tensorboard")  # where the view goes, not a setting: the result JSON stays as it was
    if config.pop("embeddings", None):
        config = embeddings_grid(config, cfg.embeddings)
    results = Path(cfg.results or "lightning_logs/classical/results.json")
    start = time.perf_counter()
    grid = Grid.from_config(config)
    runs, validation, dm = run_grid(grid, results.with_suffix(".rows.jsonl"))
    dataset = {"root": str(dm.root), "sample_rate": dm.sample_rate, "clips": len(dm.meta)}
    selected, best = select_on_validation(runs, validation), best_on_test(runs)
    extra = {"wall_seconds": round(time.perf_counter() - start, 1), "machines": [machine_info()],
             "cpu_steal_share": cpu_steal_share(), "selected": selected, "selection": grid.split(),
             "validation": validation, "upper_bound": best["name"]}
    table = write_results(results, "classical", config, dataset, runs, extra, first=[selected])
    print(table)
    print("classical: per fold, the row with the best accuracy on that fold's validation split: " +
          "; ".join(f"fold {f['fold']} {f['row']} ({f['val_accuracy']:.4f} -> test {f['accuracy']:.4f})"
                    for f in selected["folds"]))
    print(f"classical: chosen on validation {selected['mean']['accuracy']:.4f} ± {selected['std']['accuracy']:.4f}; "
          f"the best of {len(runs)} rows on the test folds, an optimistic upper bound: "
          f"{best['mean']['accuracy']:.4f} ± {best['std']['accuracy']:.4f} ({best['name']})")
    print(f"classical: {len(runs)} rows in {extra['wall_seconds']} s; results in {results} and "
          f"{results.with_suffix('.md')}")
    if cfg.tensorboard:
        from esc50_lightning.training.summary import write_classical_summary

        result = {"kind": "classical", "config": config, "dataset": dataset, "runs": runs, **extra}
        print(f"classical: TensorBoard rows in {write_classical_summary(Path(cfg.tensorboard), result)}")
