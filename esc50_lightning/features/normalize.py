"""Per-frequency standardisation with statistics from the training clips only."""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` per frequency bin; input ``(..., bins, frames)``.

    ``fit`` takes the training features ``(clips, bins, frames)``; the statistics are buffers,
    so they travel in checkpoints and exported models.
    """

    def __init__(self, n_bins: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins, 1))
        self.register_buffer("std", torch.ones(n_bins, 1))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> Standardize:
        var, mean = torch.var_mean(features.float(), dim=(0, 2))
        self.mean.copy_(mean[:, None])
        self.std.copy_(var.sqrt().clamp_min(1e-5)[:, None])
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
