"""The classical grid engine: feature x pooling x model x C x norm, cross-validated, resumable.

Spectrograms come from ``ESC50DataModule`` (computed once per feature configuration and cached),
pooled over time, and cross-validated over the official folds. Each row is also scored on every
test fold's validation split (``classical.selection``), from the same pooled features, so that a row
can be chosen per fold without looking at the test fold. Each finished row (test scores, validation
scores) is appended to a ``rows.jsonl`` file under a key of the settings that change its numbers, so
an interrupted grid resumes where it stopped and a changed grid never reuses a stale row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from rich.progress import Progress

from esc50_lightning.classical.crossval import official_folds_cv
from esc50_lightning.classical.embeddings import EmbeddingSet
from esc50_lightning.classical.estimators import MODELS, USES_C, make_pipeline
from esc50_lightning.classical.selection import validation_scores
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.results import summarize_run

Row = tuple[str, str, str, float | None, bool]  # feature, pooling, model, C, norm
SPLIT = {"val_fraction": 0.1, "seed": 0}  # the validation split's settings (data.splits), ESC50DataModule's defaults


@dataclass(frozen=True)
class Grid:
    """One grid as the ``classical`` command resolved it (plain JSON values)."""

    data: dict  # DataModule arguments shared by every feature
    features: dict[str, dict]  # name -> DataModule overrides
    poolings: list[str]
    models: list[str]
    C: list[float]
    norm: list[bool]
    params: dict[str, dict] = field(default_factory=dict)
    search: dict[str, dict] = field(default_factory=dict)
    n_jobs: int = 1
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict) -> Grid:
        return cls(**{k: config[k] for k in ("data", "features", "poolings", "models", "C", "norm", "params",
                                             "search", "n_jobs", "seed")})

    def key(self) -> str:
        """Hash of what changes a row's test numbers (not the row's own feature/pooling/model/C/norm,
        nor the validation split, which only its validation scores depend on)."""
        data = {k: v for k, v in self.data.items() if k not in SPLIT}
        return hashlib.sha1(json.dumps([data, self.features, self.params, self.search,
                                        self.seed]).encode()).hexdigest()[:12]

    def split(self) -> dict:
        """``val_fraction`` and ``seed`` of the validation split the rows are chosen on."""
        return {k: self.data.get(k, default) for k, default in SPLIT.items()}

    def validation_key(self) -> str:
        """Hash of what changes a row's validation scores: its test numbers' settings and the split."""
        return hashlib.sha1(json.dumps([self.key(), self.split()]).encode()).hexdigest()[:12]

    def rows(self) -> list[Row]:
        """Every distinct combination, in the grid's order; C is ``None`` where the model has none."""
        rows = []
        for feature, pooling, model, C, norm in product(self.features, self.poolings, self.models, self.C, self.norm):
            base = model.removesuffix("_cv")
            if base not in MODELS:
                raise ESC50Error(f"unknown classical model {model!r}; choose from {MODELS} (or with _cv)")
            if model.endswith("_cv") and base not in self.search:
                raise ESC50Error(f"model {model!r} needs a search grid under search.{base}")
            C = C if base in USES_C and not model.endswith("_cv") else None
            row = (feature, pooling, model, C, norm)
            if row not in rows:
                rows.append(row)
        return rows


def row_name(feature: str, pooling: str, model: str, C: float | None, norm: bool) -> str:
    c = "" if C is None else f"|C={C}"
    return f"{feature}|{pooling}|{model}{c}|norm={norm}"


def parse_row_name(name: str) -> dict:
    """The fields of a ``row_name`` (what TensorBoard shows as a classical row's hyper-parameters)."""
    feature, pooling, model, *rest = name.split("|")
    fields = dict(part.split("=", 1) for part in rest)
    return {"representation": feature, "pooling": pooling, "classifier": model,
            "C": float(fields["C"]) if "C" in fields else None, "norm": fields.get("norm")}


def finished_rows(rows_file: Path, key: str, field: str = "run") -> dict[str, dict]:
    """name -> ``field`` (``run``: test scores; ``validation``: validation scores) of the rows already
    in ``rows_file`` under ``key``."""
    done = {}
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a row cut short by a crash or a full disk: that row runs again
                continue
            if row.get("key") == key and field in row:
                done[row["name"]] = row[field]
    return done


def append_row(rows_file: Path, row: dict) -> None:
    with rows_file.open("a") as out:
        out.write(json.dumps(row) + "\n")


def run_grid(grid: Grid, rows_file: Path) -> tuple[list[dict], dict[str, list[dict]], ESC50DataModule]:
    """Cross-validate and score on validation every row not yet in ``rows_file`` (appending it
    there); return the runs in the grid's order, each row's validation scores by name, and the last
    feature's DataModule (for the dataset description)."""
    rows_file = Path(rows_file)
    key, val_key = grid.key(), grid.validation_key()
    done, done_val = finished_rows(rows_file, key), finished_rows(rows_file, val_key, "validation")
    validation = {}
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    combos = grid.rows()
    runs = []
    with Progress() as bar:
        task = bar.add_task("classical grid", total=len(combos))
        for feature in grid.features:
            todo = [c for c in combos if c[0] == feature]
            try:
                overrides = grid.features[feature]
                dm = EmbeddingSet(overrides["embeddings"]) if "embeddings" in overrides else \
                    ESC50DataModule(**{**grid.data, **overrides})
            except TypeError as err:
                raise ESC50Error(f"features.{feature}: {err}") from None
            pooled = {}
            for _, pooling, model, C, norm in todo:
                name = row_name(feature, pooling, model, C, norm)
                if name in done and name in done_val:
                    runs.append(done[name])
                    validation[name] = done_val[name]
                    bar.advance(task)
                    continue
                if pooling not in pooled:
                    try:
                        pooled[pooling] = dm.pooled_features(pooling)
                    except ValueError as err:
                        raise ESC50Error(f"poolings: {err}") from None
                x, y, folds, _ = pooled[pooling]
                base = model.removesuffix("_cv")
                pipe = make_pipeline(base, C, norm, grid.params.get(base), grid.search.get(base) if
                                     model.endswith("_cv") else None, n_jobs=grid.n_jobs, seed=grid.seed)
                if name in done:
                    run = done[name]
                else:
                    c_text = "search" if model.endswith("_cv") else C
                    bar.console.print(f"Cross-validating: feature={feature} | pooling={pooling} | model={model} "
                                      f"| C={c_text} | norm={norm} | dims={x.shape[1]}")
                    run = summarize_run(name, official_folds_cv(pipe, x, y, folds, n_jobs=grid.n_jobs))
                    m = run["mean"]
                    bar.console.print(f"Finished CV: accuracy={m['accuracy']:.4f} precision={m['precision']:.4f} "
                                      f"recall={m['recall']:.4f} f1={m['f1']:.4f}")
                    append_row(rows_file, {"key": key, "name": name, "run": run})
                if name in done_val:
                    scores = done_val[name]
                else:
                    scores = validation_scores(pipe, x, y, dm.meta, **grid.split(), n_jobs=grid.n_jobs)
                    bar.console.print(f"Validation splits ({name}): " +
                                      " / ".join(f"{s['accuracy']:.4f}" for s in scores))
                    append_row(rows_file, {"key": val_key, "name": name, "validation": scores})
                runs.append(run)
                validation[name] = scores
                bar.advance(task)
    dm.load_all()  # cheap (cached); also when every row was already done
    return runs, validation, dm
