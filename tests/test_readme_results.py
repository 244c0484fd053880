"""The docs quote the committed result files, not numbers typed by hand that drift from them.

Reads only files of this repository (``README.md``, ``docs/**/*.md``, the configs' comments,
``bench/results/``, ``bench/sweeps/``): when a sweep is re-run or a fold lands, the pages' tables must
follow, or this fails. Durations too: a measured time on a page is a number some result file holds.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TEXTS = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# what a config says about itself: its comment lines (a figure there is a claim like a page's)
COMMENTS = {path.relative_to(REPO).as_posix(): "\n".join(re.findall(r"#\s?(.*)$", path.read_text(), re.MULTILINE))
            for path in CONFIGS}
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
        runs += [run for run in [*doc.get("runs", []), doc.get("selected") or {}] if "mean" in run and "std" in run]
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


@pytest.mark.parametrize("page", [*TEXTS, *COMMENTS], ids=str)
def test_every_mean_and_std_is_a_committed_result(page: str) -> None:
    """Every ``0.dddd ± 0.dddd`` on a page (or in a config's comments) is some committed run's mean ±
    std of some metric."""
    known = {mean_and_std(run, metric) for run in RUNS for metric in METRICS}
    unknown = sorted(set(PLUS_MINUS.findall({**TEXTS, **COMMENTS}[page])) - known)
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


CLASSICAL = json.loads((REPO / "bench" / "results" / "classical.json").read_text())


def test_the_classical_headline_is_chosen_on_validation() -> None:
    """The README and the results page give the classical baseline as the row chosen per fold on
    validation (``classical`` writes it as ``selected``); the best row on the test folds appears only
    labelled as an optimistic upper bound, never as the headline."""
    assert "selected" in CLASSICAL, (
        "bench/results/classical.json predates the selection on validation: run `esc50-lightning classical "
        "--config configs/classical.yaml --results bench/results/classical.json` and quote its `selected` run")
    selected = mean_and_std(CLASSICAL["selected"])
    best = mean_and_std(next(run for run in CLASSICAL["runs"] if run["name"] == CLASSICAL["upper_bound"]))
    for page in ("README.md", "docs/results.md"):
        assert selected in TEXTS[page], f"{page} does not quote the validation-chosen classical {selected}"
        for line in TEXTS[page].splitlines():
            if best in line and selected not in line:
                assert "upper bound" in line, f"{page}: the best-on-test {best} unlabelled: {line}"


def test_config_comments_give_no_test_fold_figure_as_a_reason() -> None:
    """"No model or epoch is ever chosen on a test fold": a config's comments justify it with validation
    figures; a comment line that speaks of a test fold quotes no accuracy."""
    for name, comments in COMMENTS.items():
        for line in comments.splitlines():
            assert not (re.search(r"\btest\b", line, re.IGNORECASE) and re.search(r"\b0\.\d{2,}", line)), \
                f"{name}: a test figure in a comment: {line}"


# ----- durations -----------------------------------------------------------------------------------
UNITS = {"h": 3600, "min": 60, "s": 1, "hour": 3600, "hours": 3600, "minute": 60, "minutes": 60,
         "second": 1, "seconds": 1}
UNIT = r"(?:h|hours?|min|minutes?|s|seconds?)"
# ``2 h 33 min``, ``9 min 29 s``, ``1,960.5 s``: a figure and its unit, one to three of them in a row
DURATION = re.compile(rf"(?<![\w.,\-])((?:\d[\d,]*(?:\.\d+)? {UNIT}\b(?: |(?=[^\w-])|$)){{1,3}})(?![\w-])")
HEDGED = re.compile(r"(?:about|some|nearly|roughly|~|under|over|within|up to|at least|estimated?|every)\s*$")
# Times read from committed TensorBoard events rather than a result file (bench/epoch_times.py and
# the events' timestamps): each with where it is read.
FROM_EVENTS = {
    114.7: "bench/sweeps/cnn/fold4: its first 10 epochs, before the resume (first event file's span)",
    9159.5: "sweep_cnn.json total_train_seconds 9,044.8 + fold 4's first 10 epochs (114.7 s)",
    20.5: "bench/sweeps/cnn_wide/fold1: fastest epoch (bench/epoch_times.py)",
    109.9: "bench/sweeps/cnn_wide/fold1: slowest epoch (bench/epoch_times.py)",
    37.2: "bench/sweeps/cnn_wide/fold1: median epoch under 50 s (bench/epoch_times.py)",
    61.5: "bench/sweeps/cnn_320/fold3: its one epoch over 50 s (bench/epoch_times.py)",
}


def leaves(node: object) -> list[float]:
    if isinstance(node, bool):
        return []
    if isinstance(node, (int, float)):
        return [float(node)]
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [x for value in values for x in leaves(value)]


def known_durations() -> set[float]:
    """Every number of every committed result file; and what pages derive from one file's folds:
    the sum and mean of any subset of its folds' ``train_seconds``, a row's ``train_seconds`` per
    epoch, and the sum of two files' ``total_train_seconds``."""
    from itertools import combinations

    values, totals = set(FROM_EVENTS), []
    docs = [json.loads(path.read_text()) for path in [*RESULTS, *(REPO / "bench" / "sweeps").rglob("result.json")]]
    for doc in docs:
        values.update(leaves(doc))
        if "total_train_seconds" in doc:
            totals.append(doc["total_train_seconds"])
        for run in doc.get("runs", []):
            seconds = [f["train_seconds"] for f in run.get("folds", []) if "train_seconds" in f]
            for k in range(2, len(seconds) + 1):
                for subset in combinations(seconds, k):
                    values.update({sum(subset), sum(subset) / k})
        for row in doc.get("rows", []):
            epochs = doc.get("epochs")
            if isinstance(row, dict) and isinstance(row.get("train_seconds"), (int, float)) and \
                    isinstance(epochs, (int, float)):
                values.add(row["train_seconds"] / epochs)
    values.update(a + b for a, b in combinations(totals, 2))
    return values


KNOWN = known_durations()


def quoted_durations(text: str) -> list[tuple[str, float, float]]:
    """``(as written, seconds, half its last unit's step)`` of each measured duration in ``text``: one
    with a decimal or in hours or minutes, not in code, not a range (epoch spreads read from events),
    not hedged (``about 5 minutes``)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`", "", text)
    found = []
    for match in DURATION.finditer(text):
        written = match.group(1).strip()
        parts = re.findall(rf"(\d[\d,]*(?:\.\d+)?) ({UNIT})\b", written)
        if HEDGED.search(text[max(0, match.start() - 16):match.start()]):
            continue
        if len(parts) == 1 and UNITS[parts[0][1]] == 1 and "." not in parts[0][0]:
            continue  # ``5 s`` clips, ``50 s`` thresholds: settings, not measurements
        number, unit = parts[-1]
        step = UNITS[unit] * 10 ** -(len(number.split(".")[1]) if "." in number else 0)
        found.append((written, sum(float(n.replace(",", "")) * UNITS[u] for n, u in parts), step / 2))
    return found


@pytest.mark.parametrize("page", [*TEXTS, *COMMENTS], ids=str)
def test_every_quoted_duration_is_in_a_result_file(page: str) -> None:
    """A training or run time on a page (``9 min 29 s``, ``1,687.1 s``, ``2 h 33 min``) is a number a
    committed result file holds (or a sum or mean of one file's folds), at the precision written; a
    time read from committed events is listed in ``FROM_EVENTS`` with where it is read."""
    wrong = [written for written, seconds, half_step in quoted_durations({**TEXTS, **COMMENTS}[page])
             if not any(abs(value - seconds) <= half_step + 1e-6 for value in KNOWN)]
    assert not wrong, f"{page} quotes {wrong}, which no file in bench/results/ or bench/sweeps/ holds"


def test_the_duration_check_catches_a_time_typed_by_hand() -> None:
    assert [w for w, *_ in quoted_durations("took 9 min 29 s, then 1,687.1 s, 2 h 33 min and 9 minutes")] == \
        ["9 min 29 s", "1,687.1 s", "2 h 33 min", "9 minutes"]
    assert not quoted_durations("5 s clips, about 2 minutes, 11.5-12.7 s an epoch, `876.6 s`")
    seconds = {w: s for w, s, _ in quoted_durations("9 min 29 s or 556.2 s")}
    assert not any(abs(v - seconds["9 min 29 s"]) <= 0.5 for v in KNOWN) and 556.2 in KNOWN
