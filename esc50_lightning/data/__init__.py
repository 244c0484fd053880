"""ESC-50 data: metadata, download, audio decoding and caching, the DataModule."""

from esc50_lightning.data.datamodule import Augmentation, ESC50DataModule

__all__ = ["Augmentation", "ESC50DataModule"]
