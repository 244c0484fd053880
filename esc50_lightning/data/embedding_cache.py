"""A frozen encoder's embeddings of every clip, computed once and cached on disk beside the features."""

from __future__ import annotations

from pathlib import Path

import torch

from esc50_lightning.atomic import save_torch_atomic
from esc50_lightning.data.cache import cache_key, content_key, load_cached
from esc50_lightning.locks import file_lock


@torch.no_grad()
def cached_embeddings(encoder: torch.nn.Module, clips: torch.Tensor, paths: list[Path], settings: dict,
                      cache_dir: Path, device: torch.device, batch_size: int = 32) -> torch.Tensor:
    """``encoder.embed`` of every clip in ``clips`` (read from ``paths``, at the waveform
    ``settings``), ``(clips, embedding_dim)``: computed in batches on ``device`` (eval mode) and
    cached in ``cache_dir``, keyed by the clips' content, ``settings`` and ``encoder.encoder_key()``.
    Processes asking together compute it once (a lock on the file)."""
    key = cache_key(content_key(paths), {**settings, "encoder": encoder.encoder_key()})
    path = Path(cache_dir) / f"embeddings-{type(encoder).__name__}-{key}.pt"
    with file_lock(path.with_name(path.name + ".lock"),
                   lambda: print(f"waiting for another process computing {path.name}")):
        embeddings = load_cached(path)
        if embeddings is None:
            was_training = encoder.training
            encoder.eval().to(device)
            parts = [encoder.embed(clips[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(clips), batch_size)]
            encoder.train(was_training)
            embeddings = torch.cat(parts) if parts else torch.empty(0, encoder.embedding_dim)
            save_torch_atomic(embeddings, path)
    return embeddings
