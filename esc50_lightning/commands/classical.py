"""``esc50-lightning classical``: feature x pooling x model x C x norm, cross-validated.

Spectrograms come from ``ESC50DataModule`` (computed once per feature configuration and cached),
pooled over time, and cross-validated over the official folds. Finished rows are kept in
``<results>.rows.jsonl``, so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from itertools import product
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser
from rich.progress import Progress

from esc50_lightning.classical import make_pipeline, official_folds_cv
from esc50_lightning.classical.models import MODELS, USES_C
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import cpu_steal_share, machine_info
from esc50_lightning.results import summarize_run, write_results

TRAINING_ONLY = {"fold", "batch_size", "val_strategy", "val_fraction", "augment", "num_workers", "seed"}


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
    parser.add_argument("--n_jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=str | None, default=None, help="JSON to write (and .md next to it)")
    return parser


def combinations(cfg) -> list[tuple[str, str, str, float | None, bool]]:
    rows = []
    for feature, pooling, model, C, norm in product(cfg.features, cfg.poolings, cfg.models, cfg.C, cfg.norm):
        base = model.removesuffix("_cv")
        if base not in MODELS:
            raise ESC50Error(f"unknown classical model {model!r}; choose from {MODELS} (or with _cv)")
        if model.endswith("_cv") and base not in cfg.search:
            raise ESC50Error(f"model {model!r} needs a search grid under search.{base}")
        C = C if base in USES_C and not model.endswith("_cv") else None
        row = (feature, pooling, model, C, norm)
        if row not in rows:
            rows.append(row)
    return rows


def row_name(feature: str, pooling: str, model: str, C: float | None, norm: bool) -> str:
    c = "" if C is None else f"|C={C}"
    return f"{feature}|{pooling}|{model}{c}|norm={norm}"


def main(argv: list[str]) -> None:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    config = json.loads(parser.dump(cfg, format="json"))
    config.pop("config", None)
    data = dict(config["data"])
    results = Path(cfg.results or "lightning_logs/classical/results.json")
    rows_file = results.with_suffix(".rows.jsonl")
    key = hashlib.sha1(json.dumps([data, config["features"], config["params"], config["search"],
                                   cfg.seed]).encode()).hexdigest()[:12]
    done = {}
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            row = json.loads(line)
            if row.get("key") == key:
                done[row["name"]] = row["run"]
    else:
        rows_file.parent.mkdir(parents=True, exist_ok=True)
    combos = combinations(cfg)
    runs = []
    start = time.perf_counter()
    with Progress() as bar:
        task = bar.add_task("classical grid", total=len(combos))
        for feature in cfg.features:
            todo = [c for c in combos if c[0] == feature]
            try:
                dm = ESC50DataModule(**{**data, **cfg.features[feature]})
            except TypeError as err:
                raise ESC50Error(f"features.{feature}: {err}") from None
            pooled = {}
            for _, pooling, model, C, norm in todo:
                name = row_name(feature, pooling, model, C, norm)
                if name in done:
                    runs.append(done[name])
                    bar.advance(task)
                    continue
                if pooling not in pooled:
                    try:
                        pooled[pooling] = dm.pooled_features(pooling)
                    except ValueError as err:
                        raise ESC50Error(f"poolings: {err}") from None
                x, y, folds, _ = pooled[pooling]
                c_text = "search" if model.endswith("_cv") else C
                bar.console.print(f"Cross-validating: feature={feature} | pooling={pooling} | model={model} "
                                  f"| C={c_text} | norm={norm} | dims={x.shape[1]}")
                base = model.removesuffix("_cv")
                pipe = make_pipeline(base, C, norm, cfg.params.get(base), cfg.search.get(base) if
                                     model.endswith("_cv") else None, n_jobs=cfg.n_jobs, seed=cfg.seed)
                run = summarize_run(name, official_folds_cv(pipe, x, y, folds, n_jobs=cfg.n_jobs))
                m = run["mean"]
                bar.console.print(f"Finished CV: accuracy={m['accuracy']:.4f} precision={m['precision']:.4f} "
                                  f"recall={m['recall']:.4f} f1={m['f1']:.4f}")
                with rows_file.open("a") as out:
                    out.write(json.dumps({"key": key, "name": name, "run": run}) + "\n")
                runs.append(run)
                bar.advance(task)
    dm.load_all()  # cheap (cached); also when every row was already done
    dataset = {"root": str(dm.root), "sample_rate": dm.sample_rate, "clips": len(dm.meta)}
    extra = {"wall_seconds": round(time.perf_counter() - start, 1), "machines": [machine_info()],
             "cpu_steal_share": cpu_steal_share()}
    table = write_results(results, "classical", config, dataset, runs, extra)
    print(table)
    print(f"classical: {len(runs)} rows in {extra['wall_seconds']} s; results in {results} and "
          f"{results.with_suffix('.md')}")
