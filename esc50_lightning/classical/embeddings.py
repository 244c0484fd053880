"""The classical estimators on a pretrained encoder's embeddings (``esc50-lightning embed``): the linear
evaluation HEAR and the papers report, with our five-fold protocol.

``EmbeddingSet`` reads an ``embed`` file (``.npz``, ``.csv`` or ``.parquet``) and stands where the
grid engine (``classical.grid``) reads a DataModule: ``pooled_features`` gives the clips'
embeddings (one vector per clip already, so the only pooling is ``embedding``), ``meta`` their
folds, targets and source recordings (for the validation splits rows are chosen on). Everything
else (the scaler fitted on training folds only, the per-fold choice on validation, the rows file
that resumes an interrupted grid) is the grid's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from esc50_lightning.errors import ESC50Error

POOLING = "embedding"  # the embeddings are per clip already: nothing to pool


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """``(meta, embeddings, source)`` of an ``embed`` file: ``meta`` has ``filename``, ``fold``,
    ``target``, ``category``, ``src_file`` per clip; ``embeddings`` is ``(clips, dim)`` float32."""
    path = Path(path)
    if not path.is_file():
        raise ESC50Error(f"{path}: embeddings file not found (write one with esc50-lightning embed)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = pd.DataFrame({c: z[c] for c in ("filename", "fold", "target", "category", "src_file")})
                embeddings = z["embeddings"].astype(np.float32)
                source = json.loads(str(z["encoder"])) if "encoder" in z else {}
        elif suffix in (".csv", ".parquet"):
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            dims = [c for c in frame.columns if c.startswith("e") and c[1:].isdigit()]
            meta = frame[["filename", "fold", "target", "category", "src_file"]].copy()
            embeddings = frame[sorted(dims, key=lambda c: int(c[1:]))].to_numpy(np.float32)
            source = json.loads(frame.attrs.get("encoder", "{}")) if suffix == ".parquet" else {}
        else:
            raise ESC50Error(f"{path}: not an embed file (.npz, .csv or .parquet)")
    except (KeyError, ValueError, OSError) as err:
        raise ESC50Error(f"{path}: not a file written by esc50-lightning embed ({type(err).__name__}: {err})") from None
    if (meta["fold"] < 1).any():
        raise ESC50Error(f"{path}: holds embeddings of files outside the five folds (fold 0); the five-fold "
                         "protocol needs the dataset's clips (esc50-lightning embed with no audio files)")
    return meta, embeddings, source


class EmbeddingSet:
    """An embed file where the classical grid reads a DataModule (``pooled_features``, ``meta``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta, self.embeddings, self.source = read_embeddings(self.path)
        self.root = str(self.path)
        self.sample_rate = self.source.get("sample_rate")

    def load_all(self) -> None:
        pass

    def pooled_features(self, how: str = POOLING) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if how != POOLING:
            raise ValueError(f"embeddings are one vector per clip: the only pooling is {POOLING!r}, not {how!r}")
        m = self.meta
        return self.embeddings, m["target"].to_numpy(), m["fold"].to_numpy(), m["src_file"].to_numpy()


def embeddings_grid(config: dict, path: str) -> dict:
    """``config`` (the ``classical`` command's) with the grid's features replaced by the embed file
    ``path`` (feature name: the file's stem) and its poolings by ``embedding``."""
    from esc50_lightning.data.cache import content_key

    # the file's content stamp joins the grid's key: rows of an earlier file by the same name are not reused
    entry = {"embeddings": str(path), "content": content_key([Path(path)])}
    return {**config, "features": {Path(path).stem: entry}, "poolings": [POOLING]}
