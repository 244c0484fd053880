"""Test-time augmentation by circular time shifts: class probabilities averaged over shifted copies."""

from __future__ import annotations

from collections.abc import Callable

import torch


def shift_averaged(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, shifts: int) -> torch.Tensor:
    """``net(x)``, or with ``shifts > 1`` the log of its class probabilities averaged over
    ``shifts`` circular time shifts of ``x`` (``(batch, bins, frames)``), evenly spaced."""
    if shifts <= 1:
        return net(x)
    frames = x.shape[-1]
    probs = [net(torch.roll(x, k * frames // shifts, -1)).float().softmax(-1) for k in range(shifts)]
    return torch.stack(probs).mean(0).clamp_min(1e-12).log()
