"""Batches as tensor slices: the clips of a split live in one tensor; a batch is one index."""

from __future__ import annotations

import numpy as np
import torch


class SliceDataset(torch.utils.data.Dataset):
    """Clips ``index`` of ``x``/``y``. A batch is fetched with one ``__getitems__`` call: a single
    tensor slice, with no per-clip Python work (``keep_batch`` passes it through collation).
    Where ``x`` and ``y`` live on a GPU the slice is taken there: only the batch's indices are
    copied to it, without waiting for the GPU."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: np.ndarray) -> None:
        self.x, self.y, self.index = x, y, torch.as_tensor(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.index[position]
        return self.x[i], self.y[i]

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.index[torch.as_tensor(positions)]
        if self.x.device.type != "cpu":
            idx = idx.to(self.x.device, non_blocking=True)  # from pageable memory: staged, no device sync
        return self.x[idx], self.y[idx]


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's ``collate_fn``: ``SliceDataset.__getitems__`` already made the batch."""
    return batch
