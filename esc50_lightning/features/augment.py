"""Batched augmentation of spectrogram batches ``(batch, bins, frames)``, on their device.

Each module draws independent random values per example and is a no-op in ``eval()`` mode.
Mixup lives in the classifier (it changes the loss, not just the input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RandomGain(nn.Module):
    """Add a uniform offset in ``[-max_db, max_db]`` dB per example (a gain, in dB features);
    with ``linear``, multiply by that gain instead (waveforms)."""

    def __init__(self, max_db: float = 6.0, linear: bool = False) -> None:
        super().__init__()
        self.max_db, self.linear = max_db, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_db <= 0:
            return x
        gain = (torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) * 2 - 1) * self.max_db
        if self.linear:
            return x * torch.pow(10.0, gain / 20).to(x.dtype)
        return x + gain.to(x.dtype)


class RandomTimeShift(nn.Module):
    """Roll each example in time by up to ``max_fraction`` of its frames, either way."""

    def __init__(self, max_fraction: float = 0.5) -> None:
        super().__init__()
        self.max_fraction = max_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_fraction <= 0:
            return x
        frames = x.shape[-1]
        limit = int(frames * self.max_fraction)
        shift = torch.randint(-limit, limit + 1, (x.shape[0], 1, 1), device=x.device)
        index = (torch.arange(frames, device=x.device) - shift) % frames
        return x.gather(-1, index.expand_as(x))


class RandomCrop(nn.Module):
    """Cut a window of ``frames`` frames from each example at a uniform random start (one
    ``gather`` over the batch): cheaper training steps, and every part of a clip seen in turn.
    Clips no longer than ``frames`` pass through unchanged."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.frames <= 0 or x.shape[-1] <= self.frames:
            return x
        start = torch.randint(0, x.shape[-1] - self.frames + 1, (x.shape[0], 1, 1), device=x.device)
        index = start + torch.arange(self.frames, device=x.device)
        return x.gather(-1, index.expand(*x.shape[:-1], self.frames))


def stretch_and_shift(x: torch.Tensor, rate: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` ``(batch, bins, frames)`` per example: time stretched by ``rate`` (``> 1``
    slows it down, around the clip's centre) and moved up by ``shift`` bins (a pitch shift on a
    log-frequency axis); edges reflect. ``rate`` and ``shift`` are ``(batch,)`` tensors."""
    batch, bins, _ = x.shape
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = 1 / rate
    theta[:, 1, 1] = 1
    theta[:, 1, 2] = -2 * shift / bins
    grid = F.affine_grid(theta, [batch, 1, *x.shape[1:]], align_corners=False)
    out = F.grid_sample(x[:, None].float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[:, 0].to(x.dtype)


class RandomStretch(nn.Module):
    """Random time stretch by a factor in ``[1 / (1 + max_stretch), 1 + max_stretch]``
    (log-uniform) and frequency shift of up to ``max_shift`` bins either way, per example."""

    def __init__(self, max_stretch: float = 0.2, max_shift: float = 0.0) -> None:
        super().__init__()
        self.max_stretch, self.max_shift = max_stretch, max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.max_stretch <= 0 and self.max_shift <= 0):
            return x
        draw = torch.rand(2, x.shape[0], device=x.device) * 2 - 1
        rate = torch.exp(draw[0] * math.log1p(self.max_stretch))
        return stretch_and_shift(x, rate, draw[1] * self.max_shift)


def random_bands(batch: int, count: int, max_width: int, size: int, device: torch.device) -> torch.Tensor:
    """``(batch, size)`` mask: the union of ``count`` bands per example, each of a width drawn
    uniformly from ``[0, max_width)`` at a uniform position (SpecAugment's draw)."""
    width = (torch.rand(batch, count, 1, device=device) * min(max_width, size)).floor()
    start = (torch.rand(batch, count, 1, device=device) * (size - width)).floor()
    where = torch.arange(size, device=device)
    return ((where >= start) & (where < start + width)).any(1)


class SpecAugment(nn.Module):
    """SpecAugment masking (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width`` bins
    and ``time_masks`` stripes of up to ``time_width`` frames, set to ``value``, drawn
    independently per example; one pass over the batch.

    Not ``torchaudio.transforms.FrequencyMasking``/``TimeMasking`` (``iid_masks=True``): they draw
    the same widths, but not the same positions. They draw a band's start from ``size - v`` with
    ``v`` its width before rounding down, so the last start that fits comes about half as often as
    each other (``random_bands`` draws every start alike; tests/test_features.py measures both);
    they draw in the input's dtype (in bf16 the positions are rounded, and beyond 256 frames so
    is the frame index they compare with); and a width above the axis' size is not clipped. One
    call masks one band per example, so ``freq_masks`` bands would take as many passes.
    """

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 16, time_masks: int = 2, time_width: int = 24,
        value: float = 0.0,
    ) -> None:
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (self.freq_masks or self.time_masks):
            return x
        batch, bins, frames = x.shape
        mask = torch.zeros(batch, bins, frames, dtype=torch.bool, device=x.device)
        if self.freq_masks:
            mask |= random_bands(batch, self.freq_masks, self.freq_width, bins, x.device)[:, :, None]
        if self.time_masks:
            mask |= random_bands(batch, self.time_masks, self.time_width, frames, x.device)[:, None, :]
        return x.masked_fill(mask, self.value)


def build_augment(
    time_shift: float = 0.0, freq_masks: int = 0, freq_width: int = 16, time_masks: int = 0,
    time_width: int = 24, time_stretch: float = 0.0, freq_shift: float = 0.0, crop_frames: int = 0,
) -> nn.Sequential:
    """The chain applied to normalised training batches (empty when all off).

    ``RandomGain`` is not part of it: a gain acts on dB features before normalisation.
    """
    steps: list[nn.Module] = []
    if time_stretch > 0 or freq_shift > 0:
        steps.append(RandomStretch(time_stretch, freq_shift))
    if crop_frames > 0:
        steps.append(RandomCrop(crop_frames))
    if time_shift > 0:
        steps.append(RandomTimeShift(time_shift))
    if freq_masks or time_masks:
        steps.append(SpecAugment(freq_masks, freq_width, time_masks, time_width))
    return nn.Sequential(*steps)
