from pathlib import Path

import pandas as pd
import pytest

from esc50_lightning.data.meta import class_names, load_metadata
from esc50_lightning.errors import ESC50Error


def edit_csv(root: Path, change) -> None:
    path = root / "meta" / "esc50.csv"
    meta = pd.read_csv(path)
    change(meta).to_csv(path, index=False)


def test_valid_subset(tiny_root):
    meta = load_metadata(tiny_root, allow_subset=True)
    assert len(meta) == 40
    assert class_names(meta)[:4] == ["dog", "rooster", "rain", "crow"]


def test_full_dataset_required_by_default(tiny_root):
    with pytest.raises(ESC50Error, match="expected 50 classes x 40 clips"):
        load_metadata(tiny_root)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.drop(columns=["fold"]), "missing column"),
        (lambda m: m.assign(fold=m["fold"].where(m.index != 3, 7)), "unknown fold 7"),
        (lambda m: m.assign(target=m["target"].where(m.index != 3, 63)), "unknown target 63"),
        (lambda m: m.assign(fold=m["fold"].astype(str).where(m.index != 3, "x")), "non-integer fold"),
        (lambda m: pd.concat([m, m.iloc[:1]]), "duplicate file"),
        (lambda m: m.assign(category=m["category"].where(m.index != 0, "cat")), "several category names"),
        (lambda m: pd.concat([m, m.iloc[:1].assign(filename="1-999-A-0.wav")]), "missing"),
    ],
)
def test_bad_metadata_is_named(tree, change, message):
    edit_csv(tree, change)
    with pytest.raises(ESC50Error, match=message) as err:
        load_metadata(tree, allow_subset=True)
    assert "esc50.csv" in str(err.value) or "audio" in str(err.value)


def test_malformed_and_missing_csv(tree):
    path = tree / "meta" / "esc50.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(ESC50Error, match="esc50.csv"):
        load_metadata(tree, allow_subset=True)
    path.unlink()
    with pytest.raises(ESC50Error, match="metadata file not found"):
        load_metadata(tree, allow_subset=True)


def test_partial_dataset_errors_name_the_flag_as_the_user_types_it(tiny_root, tmp_path, capsys):
    from esc50_lightning.cli import main
    from esc50_lightning.data import ESC50DataModule

    with pytest.raises(ESC50Error, match=r"pass allow_subset=True for a partial dataset"):
        load_metadata(tiny_root)  # from Python
    with pytest.raises(ESC50Error, match=r"pass --data\.allow_subset true for a partial dataset"):
        ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path)).load_all()  # fit, sweep, classical
    for command in (["data", "verify"], ["data", "info"], ["plots", "waveform", "--out", str(tmp_path)]):
        with pytest.raises(SystemExit):
            main([*command, "--root", str(tiny_root)])
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "pass --allow-subset for a partial dataset" in line, command
