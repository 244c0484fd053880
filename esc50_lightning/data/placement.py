"""Where the DataModule's batches come from: every clip's inputs resident on the training GPU
(``on_device``), or host tensors copied through pinned memory; and its input pipeline moved to
the device the batches are on."""

from __future__ import annotations

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from esc50_lightning.data.slices import SliceDataset, keep_batch
from esc50_lightning.features.pipeline import InputPipeline

RESIDENT_SHARE = 0.25  # on_device auto: the clips stay on the GPU when they take at most this share of its free memory


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class InputPlacement:
    """Mixed into ``ESC50DataModule``: reads its ``on_device``, ``inputs``, ``targets``, ``index``,
    ``batch_size``, ``num_workers``, ``pipeline`` and trainer, and keeps ``_resident`` and
    ``_pipeline_placed`` (set to ``None`` in its ``__init__``)."""

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else default_device()

    def keeps_inputs_on_device(self, device: torch.device) -> bool:
        """Whether every clip's inputs stay on CUDA ``device`` (``on_device``; see the DataModule)."""
        if device.type != "cuda" or self.on_device is False or self.on_device == "false":
            return False
        if self.on_device is True or self.on_device == "true":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return self.inputs.nbytes + self.targets.nbytes <= RESIDENT_SHARE * free

    def batch_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` of every clip, where batches are sliced from: on the training
        device (copied there once per process) when it keeps them, else the host tensors."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        resident = self._resident
        if resident is not None and resident[0] is self.inputs and resident[1].device == device:
            return resident[1], resident[2]  # decided once: later loaders slice the same copy
        if not self.keeps_inputs_on_device(device):
            return self.inputs, self.targets
        self._resident = (self.inputs, self.inputs.to(device), self.targets.to(device))
        return self._resident[1], self._resident[2]

    def _pipeline_on(self, device: torch.device) -> InputPipeline:
        """``self.pipeline`` on ``device``: moved when it is elsewhere, not once per batch."""
        if self._pipeline_placed is None or self._pipeline_placed[0] is not self.pipeline \
                or self._pipeline_placed[1] != device:
            self.pipeline.to(device)
            self._pipeline_placed = (self.pipeline, device)
        return self.pipeline

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        """Training: shuffled batches (under DDP Lightning shards them with a DistributedSampler).
        Evaluation: in order, and under DDP each rank takes a disjoint share with no clip
        repeated, so metrics summed over ranks count every clip exactly once."""
        inputs, targets = self.batch_tensors()
        dataset = SliceDataset(inputs, targets, self.index[part])
        size = self.batch_size if shuffle else self.batch_size * 4
        trainer = getattr(self, "trainer", None)
        sampler = None
        if not shuffle and trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, trainer.world_size, trainer.global_rank, shuffle=False)
        on_host = inputs.device.type == "cpu"  # else sliced on the GPU: no workers, nothing to copy
        pin = on_host and trainer is not None and trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, batch_size=size, shuffle=shuffle, sampler=sampler, collate_fn=keep_batch,
                          num_workers=self.num_workers if on_host else 0, pin_memory=pin)
