"""Temporal pooling of ``(clips, bins, frames)`` spectrograms into fixed vectors for sklearn."""

from __future__ import annotations

import torch

STATISTICS = ("mean", "max", "min", "std", "delta_mean", "delta_std", "p10", "p50", "p90")
ALIASES = {"meanstd": "mean+std", "stats": "mean+std+max+min+delta_std"}


def pool(features: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Pool over the last (time) dimension: ``(N, bins, frames)`` to ``(N, bins * k)``.

    ``how`` is one statistic or several joined by ``+`` (``"mean+std"``), concatenated in that
    order: ``mean``, ``max``, ``min``, ``std``, ``delta_mean`` / ``delta_std`` (of the frame-to-
    frame difference: how fast each band changes), ``p10`` / ``p50`` / ``p90`` (percentiles).
    ``meanstd`` and ``stats`` (mean+std+max+min+delta_std) are shorthands.
    """
    parts = []
    for name in ALIASES.get(how, how).split("+"):
        x = features
        if name.startswith("delta_"):
            x, name = features.diff(dim=-1), name[len("delta_"):]
        if name == "mean":
            parts.append(x.mean(-1))
        elif name == "max":
            parts.append(x.amax(-1))
        elif name == "min":
            parts.append(x.amin(-1))
        elif name == "std":
            parts.append(x.std(-1))
        elif name in ("p10", "p50", "p90"):
            parts.append(x.float().quantile(int(name[1:]) / 100, dim=-1))
        else:
            raise ValueError(f"unknown pooling {name!r} in {how!r}; use {', '.join(STATISTICS)}")
    return torch.cat(parts, dim=-1)
