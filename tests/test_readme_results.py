"""The docs quote the committed result files, not numbers typed by hand that drift from them.

Reads only files of this repository (``README.md``, ``docs/**/*.md``, ``bench/results/``,
``bench/sweeps/``): when a sweep is re-run or a fold lands, the pages' tables must follow, or this fails.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TEXTS = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
DOCS = "\n".join(TEXTS.values())
RESULTS = sorted((REPO / "bench" / "results").glob("*.json"))
SWEEPS = [path for path in RESULTS if path.name.startswith("sweep_")]
# sweeps with a table row per fold
PER_FOLD_TABLES = ("cnn", "cnn_80ep", "cnn_fast", "cnn_320", "cnn_wide", "cnn_refit")
FOLD_RESULTS = sorted(path for name in PER_FOLD_TABLES
                      for path in (REPO / "bench" / "sweeps" / name).glob("fold*/result.json"))
METRICS = ("accuracy", "precision", "recall", "f1")
PLUS_MINUS = re.compile(r"\b0\.\d{4} ± 0\.\d{4}\b")


def mean_and_std(run: dict, metric: str = "accuracy") -> str:
    """How every results table writes a mean over folds: ``0.8625 ± 0.0170``."""
    return f"{run['mean'][metric]:.4f} ± {run['std'][metric]:.4f}"


def result_runs() -> list[dict]:
    """Every five-fold run of every committed result file (sweeps, the classical grid, ensembles)."""
    runs = []
    for path in RESULTS:
        doc = json.loads(path.read_text())
        runs += [run for run in doc.get("runs", []) if "mean" in run and "std" in run]
    return runs


RUNS = result_runs()


def tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as lists of rows of stripped cells (header first, the ``|---|`` line dropped)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_docs_quote_each_sweep_mean(path: Path) -> None:
    if path.name not in DOCS:
        pytest.skip(f"{path.name} is not cited in the docs")
    for run in json.loads(path.read_text())["runs"]:
        assert mean_and_std(run) in DOCS, f"the docs cite {path.name} but not its {mean_and_std(run)}"


def test_docs_quote_the_best_classical_row() -> None:
    runs = json.loads((REPO / "bench" / "results" / "classical.json").read_text())["runs"]
    best = max(runs, key=lambda run: run["mean"]["accuracy"])
    assert mean_and_std(best) in DOCS
    assert best["name"].replace("|", "\\|") in DOCS


@pytest.mark.parametrize("page", TEXTS, ids=str)
def test_every_mean_and_std_is_a_committed_result(page: str) -> None:
    """Every ``0.dddd ± 0.dddd`` on a page is some committed run's mean ± std of some metric."""
    known = {mean_and_std(run, metric) for run in RUNS for metric in METRICS}
    unknown = sorted(set(PLUS_MINUS.findall(TEXTS[page])) - known)
    assert not unknown, f"{page} quotes {unknown}, which no file in bench/results/ holds"


def first_number(cell: str) -> float | None:
    match = re.match(r"\**(\d+\.\d+)", cell)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("page", TEXTS, ids=str)
def test_table_rows_match_their_run(page: str) -> None:
    """In every table row that gives an accuracy as mean ± std, the precision, recall and F1 cells
    beside it are the same run's means (tables whose header names those columns)."""
    for table in tables(TEXTS[page]):
        header = [cell.lower() for cell in table[0]]
        columns = {metric: i for i, cell in enumerate(header) for metric in ("precision", "recall", "f1")
                   if cell.split()[-1:] == [metric]}
        for row in table[1:]:
            cells = [re.sub(r"^\*+|\*+$", "", cell) for cell in row]
            quoted = next((PLUS_MINUS.match(cell) for cell in cells if PLUS_MINUS.match(cell)), None)
            if quoted is None or not columns:
                continue
            candidates = [run for run in RUNS if mean_and_std(run) == quoted.group(0)]
            assert candidates, f"{page}: no committed run has accuracy {quoted.group(0)}"
            wanted = {metric: first_number(row[i]) for metric, i in columns.items() if i < len(row)}
            assert any(all(value == pytest.approx(run["mean"][metric], abs=5e-5) for metric, value in wanted.items())
                       for run in candidates), f"{page}: row {row} does not match the run with {quoted.group(0)}"


def per_fold_rows(name: str) -> list[list[str]]:
    """Rows of the per-fold tables (``| fold of `bench/sweeps/<name>/` | last validation | test | F1 |
    training s |``) on any page."""
    marker = f"`bench/sweeps/{name}/`"
    return [row for text in TEXTS.values() for table in tables(text)
            if marker in table[0][0] and table[0][0].startswith("fold") for row in table[1:]]


@pytest.mark.parametrize("name", PER_FOLD_TABLES)
def test_per_fold_table_exists(name: str) -> None:
    assert per_fold_rows(name), f"no page has a per-fold table headed `bench/sweeps/{name}/`"


@pytest.mark.parametrize("path", FOLD_RESULTS, ids=lambda p: f"{p.parent.parent.name}-{p.parent.name}")
def test_per_fold_row_matches_result(path: Path) -> None:
    """Every landed fold's test accuracy, F1 and training seconds in its sweep's per-fold table."""
    result = json.loads(path.read_text())
    rows = [row for row in per_fold_rows(path.parent.parent.name) if row[0] == str(result["fold"])]
    assert rows, f"the docs have no per-fold row for {path.relative_to(REPO)}"
    for row in rows:
        accuracy, f1, seconds = row[2:5]
        assert float(accuracy.strip("*")) == pytest.approx(result["accuracy"], abs=5e-5)
        assert float(f1) == pytest.approx(result["f1"], abs=5e-6)
        assert float(seconds.replace(",", "")) == result["train_seconds"]


ENSEMBLES = sorted(path for path in (REPO / "bench" / "results").glob("ensemble_*.json")
                   if "runs" in json.loads(path.read_text()))  # bench/ensemble.py --folds


@pytest.mark.parametrize("path", ENSEMBLES, ids=lambda p: p.name)
def test_docs_quote_each_ensemble_mean(path: Path) -> None:
    """Each run of a five-fold ensemble has a table row with its test mean ± std, and its validation
    mean where the file has one (``bench/ensemble.py``; the ``ensemble`` command scores test folds)."""
    if path.name not in DOCS:
        pytest.skip(f"{path.name} is not cited in the docs")
    for run in json.loads(path.read_text())["runs"]:
        val = f"{round(run['val_accuracy'], 5):g}" if "val_accuracy" in run else None
        val = rf"\**{re.escape(val)}\** " if val else ""
        row = rf"^\|[^\n]*\| {val}[^\n]*{re.escape(mean_and_std(run))}"
        assert re.search(row, DOCS, re.MULTILINE), f"the docs have no row for {path.name}'s {run['name']}"


LEVERS = sorted((REPO / "bench" / "results").glob("cnn_levers*.json"))
WEIGHT_COLUMNS = ("raw", "raw_bn_recomputed", "averaged", "averaged_bn_recomputed")


@pytest.mark.parametrize("path", LEVERS, ids=lambda p: p.name)
def test_docs_levers_rows_match_results(path: Path) -> None:
    """Each lever run with its four weight sets has a row ``| ... (`variant` ...) | epochs |
    training s | val / test | x4 |`` whose numbers are the result file's."""
    doc = json.loads(path.read_text())
    for run in doc["rows"]:
        if "weights" not in run:
            continue
        rows = re.findall(rf"^\|[^|\n]*\(`{re.escape(run['variant'])}`[^|\n]*\| {doc['epochs']} \| ([^|]+) \|"
                          r" ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", DOCS, re.MULTILINE)
        assert rows, f"the docs have no levers row for {path.name}'s {run['variant']} at {doc['epochs']} epochs"
        seconds, *cells = (cell.strip() for cell in rows[0])
        assert float(seconds.replace(",", "")) == run["train_seconds"], f"{path.name}: {run['variant']}'s seconds"
        for column, cell in zip(WEIGHT_COLUMNS, cells):
            val, test = (float(x) for x in cell.split(" / "))
            expected = run["weights"][column]
            assert (val, test) == pytest.approx((expected["val_accuracy"], expected["test_accuracy"]), abs=5e-6), \
                f"{path.name}: {run['variant']}'s {column}"
