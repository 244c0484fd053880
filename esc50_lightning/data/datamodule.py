"""``ESC50DataModule``: one fold of ESC-50 as in-memory spectrogram tensors, sliced into batches.

Clips are decoded once (``data.audio``), their spectrograms computed once in batches on the
training device and cached on disk, then reused by every epoch, fold and classical model. Per
fold, only index lists and the normalisation statistics (training clips only) change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from esc50_lightning.data.audio import CLIP_SECONDS
from esc50_lightning.data.augmentation import SPECTROGRAM_AUGMENTS, training_augmentation
from esc50_lightning.data.cache import cached_clips, cached_features
from esc50_lightning.data.download import default_cache_dir, ensure_dataset
from esc50_lightning.data.embedding_cache import cached_embeddings
from esc50_lightning.data.meta import NUM_CLASSES, class_names, load_metadata
from esc50_lightning.data.placement import RESIDENT_SHARE, InputPlacement, default_device
from esc50_lightning.data.splits import fold_split, validation_folds
from esc50_lightning.errors import ESC50Error
from esc50_lightning.features import RandomTimeShift, compute_features, pool
from esc50_lightning.features.pipeline import FrontendSettings, InputKind, InputPipeline

# re-exported: imported from here before they had modules of their own
__all__ = ["RESIDENT_SHARE", "SPECTROGRAM_AUGMENTS", "Augmentation", "ESC50DataModule", "default_cache_dir",
           "default_device"]


@dataclass
class Augmentation:
    """Training-batch augmentation on the device (see ``features.augment``); all off by default."""

    gain_db: float = 0.0
    time_shift: float = 0.0
    freq_masks: int = 0
    freq_width: int = 16
    time_masks: int = 0
    time_width: int = 24
    time_stretch: float = 0.0
    freq_shift: float = 0.0
    crop_seconds: float = 0.0  # train on random windows this long (0: whole clips)


class ESC50DataModule(InputPlacement, L.LightningDataModule):
    """ESC-50 with ``fold`` as the test fold and the other four for training.

    Args:
        root: dataset root (``audio/``, ``meta/esc50.csv``); default ``$ESC50_ROOT``, else a cache
            folder, downloaded when missing (a named root never is: ``data fetch`` installs it).
        fold: the test fold, 1-5, or ``all``: train on every clip of the five folds (validation,
            if any, from a grouped split of them) with no fold held out, so nothing to test.
            It never selects a checkpoint.
        sample_rate: clips are resampled to this rate (Hz) and fixed to ``clip_seconds``.
        feature, n_fft, win_length, hop_length, n_mels, f_min, f_max, top_db: the spectrogram
            (``features.SpectrogramFrontend``); ``feature: waveform`` hands the clips themselves,
            ``(1, samples)``, to a network with its own front end (``models.encoders``): then
            ``augment`` takes only ``gain_db`` (a linear gain) and ``time_shift`` (of samples).
        batch_size: clips per training batch (evaluation uses 4x).
        val_strategy: ``grouped`` carves ``val_fraction`` of the training folds out for
            validation, stratified by class and grouped by ``src_file`` (clips cut from one
            recording stay together); ``none`` trains on all four folds without validation.
            ``val_fraction``: m/k with k <= 20 (``data.splits``).
        augment: training-batch augmentation (``Augmentation``).
        precompute: compute all spectrograms once (default). ``False`` keeps waveforms and
            computes features per batch in ``on_after_batch_transfer``.
        cache_dir: where decoded waveforms and features are cached.
        allow_subset: accept a metadata file with fewer than 2,000 clips (tests, experiments).
        seed: seed of the validation split.
        on_device: keep every clip's inputs (features, or waveforms) in the training GPU's memory
            and slice batches there: ``auto`` where they take at most a quarter of its free
            memory (ESC-50's features take 100-200 MB, its 16 kHz waveforms 640 MB); ``false``
            keeps them in host memory, batches copied through pinned memory without blocking.
            On a CPU batches are sliced where the clips are, whatever this says.
    """

    def __init__(
        self,
        root: str | None = None,
        fold: int | Literal["all"] = 1,
        sample_rate: int = 16000,
        clip_seconds: float = CLIP_SECONDS,
        feature: InputKind = "log_mel",
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 512,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        batch_size: int = 32,
        val_strategy: Literal["grouped", "none"] = "grouped",
        val_fraction: float = 0.1,
        augment: Augmentation | None = None,
        precompute: bool = True,
        num_workers: int = 0,
        cache_dir: str | None = None,
        allow_subset: bool = False,
        seed: int = 0,
        on_device: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        if fold != "all" and fold not in range(1, 6):
            raise ESC50Error(f"data.fold must be 1-5 or all, got {fold}")
        validation_folds(val_fraction)  # a fraction it cannot split to fails here, in one line
        self.save_hyperparameters()
        self.root, self.fold, self.sample_rate = root, fold, sample_rate
        self.clip_seconds, self.batch_size = clip_seconds, batch_size
        self.val_strategy, self.val_fraction = val_strategy, val_fraction
        self.precompute, self.num_workers, self.allow_subset, self.seed = (
            precompute, num_workers, allow_subset, seed)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "cache"
        self.settings = FrontendSettings.from_mapping(self.hparams)
        self.pipeline = InputPipeline(self.settings)
        augment = asdict(augment or Augmentation())
        self.gain, self.augment = training_augmentation(augment, feature, sample_rate, hop_length)
        self.meta = None
        self.class_names: list[str] = [f"class_{i}" for i in range(NUM_CLASSES)]
        self.on_device = on_device
        self._resident: tuple | None = None  # (host inputs, their device copy, targets there)
        self._pipeline_placed: tuple | None = None  # (pipeline, the device it was moved to)
        self.serving_embeddings = False  # inputs are a frozen encoder's embeddings (use_embeddings)

    # ----- shapes known before any data is read (linked into the model by the CLI) -----
    @property
    def feature_shape(self) -> tuple[int, int]:
        """``(bins, frames)`` of one clip's spectrogram."""
        return self.settings.shape

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    # ----- loading: all clips, cached -----
    def load_all(self) -> None:
        """Metadata, waveforms (or features) of every clip; cheap after the first time."""
        if self.meta is not None:
            return
        self.root = str(ensure_dataset(self.root))
        self.meta = load_metadata(self.root, allow_subset=self.allow_subset, subset_hint="--data.allow_subset true")
        self.class_names = class_names(self.meta)
        self.targets = torch.tensor(self.meta["target"].to_numpy(), dtype=torch.long)
        paths = [Path(self.root) / "audio" / f for f in self.meta["filename"]]
        if not self.precompute or self.settings.feature == "waveform":  # the clips are the inputs: no second copy
            self.inputs = cached_clips(paths, self.sample_rate, self.cache_dir, self.clip_seconds)
            if self.precompute:
                self.inputs = self.inputs[:, None].clone()  # (clips, 1, samples) in RAM: batches are random slices
            return
        self.inputs = cached_features(paths, self.settings.as_dict(), self.cache_dir,
                                      lambda waves: compute_features(self.pipeline.frontend, waves, self._device()))

    def all_features(self) -> torch.Tensor:
        """Spectrograms of every clip ``(clips, bins, frames)``, un-normalised."""
        self.load_all()
        if self.precompute:
            return self.inputs
        return compute_features(self.pipeline.frontend, self.inputs, self._device())

    # ----- one fold -----
    def split(self) -> dict[str, np.ndarray]:
        """Clip indices of ``train``, ``val`` (maybe empty) and ``test`` for ``self.fold``
        (with fold ``all``, ``test`` is empty)."""
        self.load_all()
        return fold_split(self.meta, self.fold, self.val_strategy, self.val_fraction, self.seed)

    def prepare_data(self) -> None:
        """Download, decode and compute features into the cache. Lightning calls this on one
        process per machine; under DDP the other ranks wait, then load the cache in ``setup``."""
        self.load_all()

    def setup(self, stage: str | None = None) -> None:
        self.load_all()
        self.index = self.split()
        train = self.index["train"]
        if self.settings.feature == "waveform" or self.serving_embeddings:
            return  # nothing to fit: the encoder normalises its own features
        if self.precompute:
            train_features = self.inputs[train]
        else:
            train_features = compute_features(self.pipeline.frontend, self.inputs[train], self._device())
        self.pipeline.fit(train_features)

    def pooled_features(self, how: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, folds, groups)`` for every clip: pooled features for scikit-learn.

        Not normalised: the classical pipelines fit their own scaler inside each training split.
        """
        x = pool(self.all_features(), how).numpy()
        m = self.meta
        return x, m["target"].to_numpy(), m["fold"].to_numpy(), m["src_file"].to_numpy()

    # ----- loaders (batches sliced where ``placement.InputPlacement`` keeps the clips) -----
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if len(self.index["val"]) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        if not isinstance(batch, (tuple, list)):  # the model summary's example input
            return batch
        trainer = getattr(self, "trainer", None)
        return self.model_inputs(batch[0], augment=trainer is not None and trainer.training), batch[1]

    def model_inputs(self, x: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """What the model sees of a batch of clips (or precomputed features), on their device:
        features, normalisation and, with ``augment``, the training augmentation."""
        if self.serving_embeddings:  # a frozen encoder's embeddings: nothing left to compute or augment
            return x
        pipeline = self._pipeline_on(x.device)
        if not self.precompute:
            x = pipeline.features(x)
        if augment:
            x = self.gain.train()(x)  # dB offset: before normalisation
        x = pipeline.normalize(x)
        return self.augment.train()(x) if augment else x

    def clean_batches(self, part: str, device: torch.device, seed: int = 0) -> Iterator[torch.Tensor]:
        """``part``'s clips as evaluation sees them (no augmentation), ``batch_size`` at a time in
        a fixed shuffled order: for statistics such as BatchNorm's (``training.ema``)."""
        index = self.index[part]
        order = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed)).numpy()]
        inputs = self.batch_tensors()[0]
        for start in range(0, len(order), self.batch_size):
            batch = torch.as_tensor(order[start:start + self.batch_size]).to(inputs.device, non_blocking=True)
            yield self.model_inputs(inputs[batch].to(device, non_blocking=torch.device(device).type == "cuda"))

    # ----- a frozen encoder's embeddings, computed once per clip (a linear probe) -----
    @torch.no_grad()
    def use_embeddings(self, encoder: torch.nn.Module, device: torch.device | None = None,
                       batch_size: int = 32) -> None:
        """Serve ``encoder.embed`` of every clip instead of the clips, ``(clips, embedding_dim)``.

        Computed once in batches on ``device`` (eval mode, no augmentation) and cached on disk
        beside the features, keyed by the clips' content, the waveform settings and
        ``encoder.encoder_key()``: every fold of a sweep, and every later probe of the same
        encoder, reads it back. Processes asking together compute it once (a lock on the file).
        """
        self.load_all()
        if self.settings.feature != "waveform":
            raise ESC50Error("cached embeddings need data.feature waveform (the encoder reads the clips)")
        if self.serving_embeddings:
            return
        paths = [Path(self.root) / "audio" / f for f in self.meta["filename"]]
        embeddings = cached_embeddings(encoder, self.inputs, paths, self.settings.as_dict(), self.cache_dir,
                                       device or self._device(), batch_size)
        if self.gain.max_db > 0 or any(isinstance(m, RandomTimeShift) for m in self.augment):
            print("linear probe on cached embeddings: data.augment (gain_db, time_shift) is not applied")
        self.inputs = embeddings.clone()
        self.serving_embeddings = True

    # ----- what a checkpoint needs to use the model on new audio -----
    def state_dict(self) -> dict:
        return {"input_pipeline": self.pipeline.checkpoint_state(), "class_names": self.class_names}

    def load_state_dict(self, state: dict) -> None:
        self.pipeline = self.pipeline_from_checkpoint(state, self.hparams)
        self.class_names = list(state["class_names"])

    @staticmethod
    def pipeline_from_checkpoint(state: dict, hparams: dict) -> InputPipeline:
        """The input pipeline saved by ``state_dict``; checkpoints written before the pipeline had
        a home of its own kept the normaliser alone, with the settings in the hyper-parameters."""
        if "input_pipeline" in state:
            return InputPipeline.from_checkpoint_state(state["input_pipeline"])
        return InputPipeline.from_checkpoint_state(
            {"settings": FrontendSettings.from_mapping(hparams).as_dict(), "normalizer": state["normalizer"]})
