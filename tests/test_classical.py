import json
import re

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from esc50_lightning.cli import main
from esc50_lightning.data import ESC50DataModule

from .conftest import FAST_DATA

DATA = {k: v for k, v in FAST_DATA.items()
        if k in ("sample_rate", "n_fft", "hop_length", "n_mels", "allow_subset", "val_fraction")}


def classical_args(root, cache, results, **overrides):
    args = ["classical", f"--data.root={root}", f"--data.cache_dir={cache}", f"--results={results}",
            "--features={log_mel: {feature: log_mel}, linear: {feature: linear}}", "--poolings=[mean, meanstd]",
            "--models=[svm, logreg, rf, svm_cv]", "--C=[1.0]", "--norm=[true, false]",
            "--params={rf: {n_estimators: 10}}", "--search={svm: {C: [1.0, 10.0]}}", "--n_jobs=1",
            "--tensorboard="]
    args += [f"--data.{k}={v}" for k, v in DATA.items()]
    return args + [f"--{k}={v}" for k, v in overrides.items()]


def test_no_test_fold_clip_reaches_any_fit(tiny_root, tmp_path, monkeypatch):
    """Every fit (scaler, SVM, logistic regression, forest; inner searches and the validation fits
    too) sees at most four folds, and no model is scored on a clip it was fitted on: whatever is
    scored on fold k (or on a validation split) was fitted without it."""
    clip_of_row, fold_of_clip = {}, {}
    for feature in ("log_mel", "linear"):
        dm = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path / "cache"), feature=feature, **DATA)
        for pooling in ("mean", "meanstd"):
            x, _, folds, _ = dm.pooled_features(pooling)
            for clip, (row, f) in enumerate(zip(x, folds)):
                clip_of_row[row.astype(np.float32).tobytes()] = clip
                fold_of_clip[clip] = f
    fits, predictions, alive = [], [], []

    def clips_of(x):
        """Clips of the rows of ``x``; ``None`` for rows already standardised inside a pipeline."""
        keys = [np.asarray(row, dtype=np.float32).tobytes() for row in x]
        return {clip_of_row[k] for k in keys} if all(k in clip_of_row for k in keys) else None

    def spy(cls, method, log):
        original = cls.__dict__.get(method) or getattr(cls, method)  # may be sklearn's available_if

        def wrapped(self, x, *args, **kwargs):
            seen = clips_of(x)
            if seen is not None:
                log.append((id(self), seen))
                alive.append(self)  # keeps ids unique: no estimator is freed and its id reused
            return original.__get__(self, type(self))(x, *args, **kwargs)

        wrapped.__name__ = method  # sklearn's scorers look the method up again by name
        monkeypatch.setattr(cls, method, wrapped)

    for cls in (Pipeline, SVC, LogisticRegression, RandomForestClassifier):
        spy(cls, "fit", fits)
        spy(cls, "predict", predictions)
    spy(StandardScaler, "fit", fits)
    main(classical_args(tiny_root, tmp_path / "cache", tmp_path / "r.json"))
    assert fits and predictions
    assert all(len({fold_of_clip[c] for c in clips}) <= 4 for _, clips in fits)
    assert any(len(clips) < 32 for _, clips in fits), "no validation fit (fewer clips than four folds)"
    fitted = {}
    for owner, clips in fits:
        fitted.setdefault(owner, set()).update(clips)
    for owner, scored in predictions:
        assert not fitted[owner] & scored, "a model was scored on clips it was fitted on"


def test_json_table_and_resume(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "classical.json"
    main(classical_args(tiny_root, tmp_path / "cache", results, tensorboard=tmp_path / "tb"))
    doc = json.loads(results.read_text())
    assert len(list((tmp_path / "tb").iterdir())) == len(doc["runs"])  # one HParams row per grid row
    assert doc["kind"] == "classical" and doc["dataset"]["clips"] == 40
    assert doc["cpu_steal_share"] is None or 0 <= doc["cpu_steal_share"] <= 1  # timed, so it says the host's steal
    names = [r["name"] for r in doc["runs"]]
    assert "log_mel|mean|svm|C=1.0|norm=True" in names and "linear|meanstd|rf|norm=False" in names
    assert len(names) == 2 * 2 * 4 * 2
    for run in doc["runs"]:
        assert [f["fold"] for f in run["folds"]] == [1, 2, 3, 4, 5]
        assert 0 <= run["mean"]["accuracy"] <= 1
    table = results.with_suffix(".md").read_text().splitlines()
    cells = [re.split(r"(?<!\\)\|", line) for line in table[2:]]  # cells end at unescaped pipes
    assert all(len(c) == 8 for c in cells)
    assert cells[0][1].strip() == "`selected on validation`"  # the headline first, then the grid, best first
    accuracies = [float(c[3].split("±")[0]) for c in cells[1:]]
    assert accuracies == sorted(accuracies, reverse=True)
    # the synthetic classes are easy: the best row separates them
    assert max(r["mean"]["accuracy"] for r in doc["runs"]) >= 0.9

    import esc50_lightning.classical.grid as grid

    monkeypatch.setattr(grid, "official_folds_cv", lambda *a, **k: pytest.fail("recomputed a finished row"))
    monkeypatch.setattr(grid, "validation_scores", lambda *a, **k: pytest.fail("re-validated a finished row"))
    main(classical_args(tiny_root, tmp_path / "cache", results))
    again = json.loads(results.read_text())
    assert again["runs"] == doc["runs"] and again["dataset"] == doc["dataset"]
    assert again["selected"] == doc["selected"]


@pytest.mark.parametrize("override, message", [
    ({"models": "[svm, knn]"}, "unknown classical model"),
    ({"poolings": "[median]"}, "unknown pooling"),
    ({"models": "[logreg_cv]"}, "needs a search grid"),
])
def test_bad_grid_is_one_clear_error(tiny_root, tmp_path, capsys, override, message):
    with pytest.raises(SystemExit) as exit_:
        main(classical_args(tiny_root, tmp_path / "cache", tmp_path / "r.json", **override))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_row_cut_short_is_run_again_not_a_traceback(tmp_path):
    """A crash or a full disk while a row was appended leaves half a line: the grid resumes the
    whole rows and runs that one again."""
    import json

    from esc50_lightning.classical.grid import finished_rows

    rows = tmp_path / "results.rows.jsonl"
    whole = {"key": "k", "name": "log_mel|mean|svm|C=1.0|norm=True", "run": {"mean": {"accuracy": 0.5}}}
    rows.write_text(json.dumps(whole) + "\n" + json.dumps({**whole, "name": "other"})[:30] + "\n")
    assert finished_rows(rows, "k") == {whole["name"]: whole["run"]}


def test_the_headline_row_is_chosen_per_fold_on_validation(tiny_root, tmp_path, monkeypatch, capsys):
    """Per test fold, the row with the best accuracy on that fold's validation split (the split
    ``fit`` carves, ``data.splits.fold_split``), scored with the grid's own test numbers for that fold;
    the best row on the test folds is named beside it as an upper bound. A rows file that holds only
    test scores (an older grid) gains the validation scores without any test row recomputed."""
    from esc50_lightning.data.splits import fold_split

    results = tmp_path / "classical.json"
    main(classical_args(tiny_root, tmp_path / "cache", results, models="[logreg, rf]"))
    doc = json.loads(results.read_text())
    out = capsys.readouterr().out
    assert "chosen on validation" in out and "optimistic upper bound" in out
    assert doc["selection"] == {"val_fraction": DATA["val_fraction"], "seed": 0}
    runs = {run["name"]: run for run in doc["runs"]}
    assert doc["upper_bound"] == max(runs, key=lambda name: runs[name]["mean"]["accuracy"])
    meta = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path / "cache"), **DATA)
    meta.load_all()
    for i, fold in enumerate(doc["selected"]["folds"]):
        k = fold["fold"]
        scores = {name: doc["validation"][name][i] for name in runs}
        clips = len(fold_split(meta.meta, k, "grouped", DATA["val_fraction"])["val"])
        assert all(s["fold"] == k and s["clips"] == clips for s in scores.values())
        best = max(s["accuracy"] for s in scores.values())
        first_best = next(name for name in runs if scores[name]["accuracy"] == best)  # ties: grid order
        assert fold["row"] == first_best and fold["val_accuracy"] == best
        assert fold["accuracy"] == runs[first_best]["folds"][i]["accuracy"]  # its test score is the grid's
    chosen = doc["selected"]
    assert chosen["mean"]["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in chosen["folds"]]))

    rows = results.with_suffix(".rows.jsonl")
    rows.write_text("".join(line + "\n" for line in rows.read_text().splitlines() if '"validation"' not in line))
    import esc50_lightning.classical.grid as grid

    monkeypatch.setattr(grid, "official_folds_cv", lambda *a, **k: pytest.fail("recomputed a finished row"))
    main(classical_args(tiny_root, tmp_path / "cache", results, models="[logreg, rf]"))
    assert json.loads(results.read_text())["selected"] == doc["selected"]
