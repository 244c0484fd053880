"""The README quotes the committed result files, not numbers typed by hand that drift from them.

Reads only files of this repository (``README.md``, ``bench/results/``, ``bench/sweeps/``): when a
sweep is re-run or a fold lands, the README's tables must follow, or this fails.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SWEEPS = sorted((REPO / "bench" / "results").glob("sweep_*.json"))
PER_FOLD_TABLES = ("cnn_fast", "cnn_320", "cnn_wide")  # sweeps whose README section has a row per fold
FOLD_RESULTS = sorted(path for name in PER_FOLD_TABLES
                      for path in (REPO / "bench" / "sweeps" / name).glob("fold*/result.json"))


def mean_and_std(run: dict) -> str:
    """How every results table writes an accuracy: ``0.8625 ± 0.0170``."""
    return f"{run['mean']['accuracy']:.4f} ± {run['std']['accuracy']:.4f}"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_readme_quotes_each_sweep_mean(path: Path) -> None:
    if path.name not in README:
        pytest.skip(f"{path.name} is not cited in the README")
    for run in json.loads(path.read_text())["runs"]:
        assert mean_and_std(run) in README, f"README does not quote {path.name}'s {mean_and_std(run)}"


def test_readme_quotes_the_best_classical_row() -> None:
    runs = json.loads((REPO / "bench" / "results" / "classical.json").read_text())["runs"]
    best = max(runs, key=lambda run: run["mean"]["accuracy"])
    assert mean_and_std(best) in README
    assert best["name"].replace("|", "\\|") in README


@pytest.mark.parametrize("path", FOLD_RESULTS, ids=lambda p: f"{p.parent.parent.name}-{p.parent.name}")
def test_readme_per_fold_row_matches_result(path: Path) -> None:
    """Per-fold tables (fold | last validation | test | F1 | training s), each the first table after
    the README names the sweep's folder: every landed fold's test accuracy, F1 and seconds."""
    result = json.loads(path.read_text())
    section = README[README.index(f"`bench/sweeps/{path.parent.parent.name}/`"):]
    row = re.search(rf"^\| {result['fold']} \| [^|]* \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    assert row, f"README has no per-fold row for {path.relative_to(REPO)}"
    accuracy, f1, seconds = (cell.strip() for cell in row.groups())
    assert float(accuracy) == pytest.approx(result["accuracy"], abs=5e-5)
    assert float(f1) == pytest.approx(result["f1"], abs=5e-6)
    assert float(seconds.replace(",", "")) == result["train_seconds"]


ENSEMBLES = sorted(path for path in (REPO / "bench" / "results").glob("ensemble_*.json")
                   if "runs" in json.loads(path.read_text()))  # bench/ensemble.py --folds


@pytest.mark.parametrize("path", ENSEMBLES, ids=lambda p: p.name)
def test_readme_quotes_each_ensemble_mean(path: Path) -> None:
    """Each subset of a five-fold ensemble has a README row with its validation mean and test mean ± std."""
    if path.name not in README:
        pytest.skip(f"{path.name} is not cited in the README")
    for run in json.loads(path.read_text())["runs"]:
        val = f"{round(run['val_accuracy'], 5):g}"
        row = rf"^\|[^\n]*\| \**{re.escape(val)}\** [^\n]*{re.escape(mean_and_std(run))}"
        assert re.search(row, README, re.MULTILINE), f"README has no row for {path.name}'s {run['name']}"


LEVERS = sorted((REPO / "bench" / "results").glob("cnn_levers*.json"))
WEIGHT_COLUMNS = ("raw", "raw_bn_recomputed", "averaged", "averaged_bn_recomputed")


@pytest.mark.parametrize("path", LEVERS, ids=lambda p: p.name)
def test_readme_levers_rows_match_results(path: Path) -> None:
    """Each lever run with its four weight sets has a README row ``| ... (`variant` ...) | epochs |
    training s | val / test | x4 |`` whose numbers are the result file's."""
    doc = json.loads(path.read_text())
    for run in doc["rows"]:
        if "weights" not in run:
            continue
        rows = re.findall(rf"^\|[^|\n]*\(`{re.escape(run['variant'])}`[^|\n]*\| {doc['epochs']} \| ([^|]+) \|"
                          r" ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", README, re.MULTILINE)
        assert rows, f"README has no levers row for {path.name}'s {run['variant']} at {doc['epochs']} epochs"
        seconds, *cells = (cell.strip() for cell in rows[0])
        assert float(seconds.replace(",", "")) == run["train_seconds"], f"{path.name}: {run['variant']}'s seconds"
        for column, cell in zip(WEIGHT_COLUMNS, cells):
            val, test = (float(x) for x in cell.split(" / "))
            expected = run["weights"][column]
            assert (val, test) == pytest.approx((expected["val_accuracy"], expected["test_accuracy"]), abs=5e-6), \
                f"{path.name}: {run['variant']}'s {column}"
