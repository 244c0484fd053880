"""``WarmupEMA``: Lightning's weight averaging with an exponential moving average that warms up.

Lightning's ``EMAWeightAveraging`` uses a fixed decay from the first step, so for the first
``1 / (1 - decay)`` steps the average is mostly the random initial weights (validation near
chance for the first epochs, and a trace of them even at the end of a short schedule). Here the
decay grows as ``min(decay, (1 + n) / (10 + n))`` with ``n`` the updates so far, as in
TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and timm's ``ModelEmaV3``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of update ``updates + 1``: ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(decay, (1 + updates) / (10 + updates))


class WarmupEMA(WeightAveraging):
    """Exponential moving average of the weights (and BatchNorm statistics), updated after every
    optimiser step, with the warm-up above; validated, tested and checkpointed as Lightning's
    ``WeightAveraging`` does (the raw weights stay in the checkpoint as ``current_model_state``).

    Args:
        decay: the decay once warmed up; the average spans about ``1 / (1 - decay)`` steps.
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WarmupEMA: decay must be in (0, 1), got {decay}")
        self.decay = decay
        super().__init__(multi_avg_fn=self.average)

    def average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        """Update ``averaged`` in place (one call per device and dtype, as torch's EMA does)."""
        weight = 1.0 - warmup_decay(self.decay, int(num_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (BatchNorm's num_batches_tracked)
            for avg, cur in zip(averaged, current):
                avg.copy_(avg * (1.0 - weight) + cur * weight)
