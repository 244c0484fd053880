"""Read and validate ESC-50's ``meta/esc50.csv`` so that bad metadata fails early and by name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from esc50_lightning.errors import ESC50Error

REQUIRED_COLUMNS = ("filename", "fold", "target", "category", "src_file")
NUM_FOLDS = 5
NUM_CLASSES = 50
CLIPS_PER_CLASS = 40


def metadata_path(root: str | Path) -> Path:
    return Path(root) / "meta" / "esc50.csv"


def load_metadata(root: str | Path, allow_subset: bool = False, subset_hint: str = "allow_subset=True") -> pd.DataFrame:
    """Return the validated metadata table of an ESC-50 root, sorted by file name.

    Checks the columns, folds 1-5, targets 0-49 with one category name each, unique file
    names and that every listed clip exists under ``root/audio``. The complete-dataset checks
    (all 50 classes, 40 clips per class, all 5 folds) are skipped with ``allow_subset``.
    ``subset_hint``: ``allow_subset`` as the caller's user types it (``--allow-subset``,
    ``--data.allow_subset true``), named in the error that asks for it.
    """
    path = metadata_path(root)
    if not path.is_file():
        raise ESC50Error(f"{path}: metadata file not found (is {root} an ESC-50 root?)")
    try:
        meta = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ESC50Error(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
    if missing:
        raise ESC50Error(f"{path}: missing column(s) {', '.join(missing)}")
    if meta.empty:
        raise ESC50Error(f"{path}: no clips listed")
    for col in ("fold", "target"):
        values = pd.to_numeric(meta[col], errors="coerce")
        bad = meta.loc[values.isna() | (values != values.round()), "filename"]
        if len(bad):
            raise ESC50Error(f"{path}: non-integer {col} for {bad.iloc[0]}")
        meta[col] = values.astype(int)
    bad_fold = meta.loc[~meta["fold"].between(1, NUM_FOLDS)]
    if len(bad_fold):
        row = bad_fold.iloc[0]
        raise ESC50Error(f"{path}: unknown fold {row.fold} for {row.filename} (expected 1-5)")
    bad_target = meta.loc[~meta["target"].between(0, NUM_CLASSES - 1)]
    if len(bad_target):
        row = bad_target.iloc[0]
        raise ESC50Error(f"{path}: unknown target {row.target} for {row.filename} (expected 0-49)")
    dup = meta.loc[meta["filename"].duplicated(), "filename"]
    if len(dup):
        raise ESC50Error(f"{path}: duplicate file {dup.iloc[0]}")
    names = meta.groupby("target")["category"].nunique()
    if (names > 1).any():
        raise ESC50Error(f"{path}: target {names[names > 1].index[0]} has several category names")
    if not allow_subset:
        counts = meta["target"].value_counts()
        if len(counts) != NUM_CLASSES or (counts != CLIPS_PER_CLASS).any():
            raise ESC50Error(
                f"{path}: expected {NUM_CLASSES} classes x {CLIPS_PER_CLASS} clips, found "
                f"{len(counts)} classes with {counts.min()}-{counts.max()} clips "
                f"(pass {subset_hint} for a partial dataset)"
            )
        if meta["fold"].nunique() != NUM_FOLDS:
            raise ESC50Error(f"{path}: expected folds 1-5, found {sorted(meta['fold'].unique().tolist())} "
                             f"(pass {subset_hint} for a partial dataset)")
    audio_dir = Path(root) / "audio"
    absent = [f for f in meta["filename"] if not (audio_dir / f).is_file()]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise ESC50Error(f"{audio_dir / absent[0]}: listed in {path} but missing{more}")
    return meta.sort_values("filename").reset_index(drop=True)


def class_names(meta: pd.DataFrame) -> list[str]:
    """Category name of each target 0-49 (``"class_K"`` where a subset lacks target K)."""
    names = dict(zip(meta["target"], meta["category"]))
    return [str(names.get(t, f"class_{t}")) for t in range(NUM_CLASSES)]
