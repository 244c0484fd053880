"""``esc50-lightning embed --out FILE (--encoder CLASS --encoder.NAME VALUE ... | --ckpt F.ckpt) [AUDIO ...]``.

One embedding per clip of ESC-50 (no AUDIO given) or per audio file given, from a pretrained encoder
(``models.encoders``): its published weights (``--encoder esc50_lightning.models.encoders.PANNs
--encoder.model Cnn14 --encoder.weights audioset``) or one of our checkpoints of an encoder
(``--ckpt``, e.g. a fine-tuned one). The encoder reads each clip at its own sample rate (resampled)
through its own front end, in batches on ``--device``, in eval mode.

``--out`` is read by numpy or pandas, by its suffix:

- ``.npz``: ``embeddings`` ``(clips, dim)`` float32, and ``filename``, ``fold``, ``target``,
  ``category``, ``src_file`` per clip, and ``encoder`` (what made them, as JSON);
- ``.csv`` / ``.parquet``: one row per clip, those columns and ``e0`` ... ``e{dim-1}``
  (``.parquet`` needs pyarrow).

A given file's fold is 0 and its target -1; a file longer than the training clip is cut into
clip-long windows with 50 % overlap, whose embeddings are averaged. ``esc50-lightning classical
--embeddings FILE`` runs the scikit-learn estimators on the clips' embeddings with the five-fold
protocol.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.pipeline import CLIP_SECONDS
from esc50_lightning.models.classifier import NetFactory
from esc50_lightning.models.encoders.base import is_encoder

COLUMNS = ("filename", "fold", "target", "category", "src_file")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="esc50-lightning embed", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("audio", nargs="*", default=[], help="audio files to embed (default: every ESC-50 clip)")
    parser.add_argument("--out", type=str, required=True, help=".npz, .csv or .parquet")
    parser.add_argument("--encoder", type=NetFactory | None, default=None,
                        help="a pretrained encoder class (class_path, init_args), e.g. "
                             "esc50_lightning.models.encoders.PANNs with --encoder.weights audioset")
    parser.add_argument("--ckpt", type=str | None, default=None, help="or a checkpoint of ours whose net is an encoder")
    parser.add_argument("--root", type=str | None, default=None, help="ESC-50 root (default: as fit's --data.root)")
    parser.add_argument("--allow_subset", type=bool, default=False, help="accept fewer than 2,000 clips")
    parser.add_argument("--clip_seconds", type=float, default=CLIP_SECONDS, help="clip length the encoder reads")
    parser.add_argument("--cache_dir", type=str | None, default=None, help="decoded clips' cache")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    return parser


def encoder_from(cfg, factory, clip_seconds: float) -> tuple[nn.Module, dict, float]:
    """The encoder (eval mode), a description of where it came from, and the clip length it reads."""
    if (cfg.ckpt is None) == (factory is None):
        raise ESC50Error("embed: give --encoder (a pretrained encoder) or --ckpt (a checkpoint of one), not both")
    if cfg.ckpt is not None:
        from esc50_lightning.training.checkpoints import load_checkpoint

        model = load_checkpoint(cfg.ckpt)
        net = model.module.net
        if not is_encoder(net):
            raise ESC50Error(f"{cfg.ckpt}: its net ({type(net).__name__}) is not a pretrained encoder "
                             "(models.encoders); embed reads those")
        return net.eval(), {"checkpoint": str(cfg.ckpt)}, model.clip_samples / model.sample_rate
    try:
        probe = factory(1, 2, 2)  # only to learn the rate: the real one is built for the clip length
    except (TypeError, ValueError) as err:
        raise ESC50Error(f"--encoder: {str(err).splitlines()[0]}") from None
    if not is_encoder(probe):
        raise ESC50Error(f"--encoder {type(probe).__name__} is not a pretrained encoder (models.encoders)")
    net = factory(1, int(round(probe.sample_rate * clip_seconds)), 2)
    if hasattr(net, "load_pretrained"):
        net.load_pretrained()
    settings = {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", **net.settings()}
    return net.eval(), {"encoder": settings, "weights": getattr(net, "weights", None)}, clip_seconds


@torch.no_grad()
def embed_waves(net: nn.Module, waves: torch.Tensor, device: torch.device, batch_size: int = 32) -> np.ndarray:
    """``(clips, samples)`` at ``net.sample_rate`` to ``(clips, embedding_dim)`` float32, in batches."""
    net = net.to(device)
    parts = [net.embed(waves[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(waves), batch_size)]
    return (torch.cat(parts) if parts else torch.empty(0, net.embedding_dim)).numpy()


def dataset_table(cfg, net: nn.Module, clip_seconds: float, device: torch.device) -> dict:
    from esc50_lightning.data.cache import cached_clips
    from esc50_lightning.data.datamodule import default_cache_dir
    from esc50_lightning.data.download import ensure_dataset
    from esc50_lightning.data.meta import load_metadata

    root = ensure_dataset(cfg.root)
    meta = load_metadata(root, allow_subset=cfg.allow_subset, subset_hint="--allow_subset true")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir() / "cache"
    waves = cached_clips([root / "audio" / f for f in meta["filename"]], net.sample_rate, cache, clip_seconds)
    table = {c: meta[c].to_numpy() for c in COLUMNS}
    table["embeddings"] = embed_waves(net, waves, device, cfg.batch_size)
    return table


def files_table(cfg, net: nn.Module, clip_seconds: float, device: torch.device) -> dict:
    from esc50_lightning.data.audio import load_clip
    from esc50_lightning.training.inference import windows

    size = int(round(net.sample_rate * clip_seconds))
    rows = []
    for path in cfg.audio:
        batch, _ = windows(load_clip(path, net.sample_rate), size)
        rows.append(embed_waves(net, batch, device, cfg.batch_size).mean(0))
    n = len(cfg.audio)
    return {"filename": np.array(cfg.audio), "fold": np.zeros(n, int), "target": np.full(n, -1),
            "category": np.array([""] * n), "src_file": np.array(cfg.audio), "embeddings": np.stack(rows)}


def write_table(out: Path, table: dict, source: dict) -> Path:
    """``table`` (``COLUMNS`` and ``embeddings``) to ``out`` by its suffix, atomically."""
    from esc50_lightning.atomic import write_atomic

    suffix = out.suffix.lower()
    if suffix == ".npz":
        arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in table.items()}
        return write_atomic(out, lambda f: np.savez(f, **arrays, encoder=np.array(json.dumps(source))))
    if suffix not in (".csv", ".parquet"):
        raise ESC50Error(f"--out {out}: write .npz, .csv or .parquet")
    import pandas as pd

    frame = pd.DataFrame({c: table[c] for c in COLUMNS})
    emb = table["embeddings"]
    frame = pd.concat([frame, pd.DataFrame(emb, columns=[f"e{i}" for i in range(emb.shape[1])])], axis=1)
    if suffix == ".csv":
        return write_atomic(out, lambda f: frame.to_csv(f, index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ESC50Error(f"--out {out}: .parquet needs pyarrow (pip install pyarrow); or write .npz or .csv") from None
    frame.attrs["encoder"] = json.dumps(source)
    return write_atomic(out, lambda f: frame.to_parquet(f, index=False))


def main(argv: list[str]) -> None:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    out = Path(cfg.out)
    if out.suffix.lower() not in (".npz", ".csv", ".parquet"):
        raise ESC50Error(f"--out {out}: write .npz, .csv or .parquet")
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ESC50Error(f"--out {out}: .parquet needs pyarrow (pip install pyarrow); "
                             "or write .npz or .csv") from None
    factory = parser.instantiate(cfg).encoder if cfg.encoder is not None else None
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    net, source, clip_seconds = encoder_from(cfg, factory, cfg.clip_seconds)
    start = time.perf_counter()
    table = (files_table if cfg.audio else dataset_table)(cfg, net, clip_seconds, device)
    seconds = time.perf_counter() - start
    out = write_table(out, table, {**source, "clip_seconds": clip_seconds, "sample_rate": net.sample_rate})
    n, dim = table["embeddings"].shape
    print(f"embed: {n} {'files' if cfg.audio else 'clips'} x {dim} dims in {seconds:.1f} s on {device} -> {out}")
