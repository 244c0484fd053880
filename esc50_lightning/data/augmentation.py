"""The DataModule's training-batch augmentation built from its ``augment`` settings
(``datamodule.Augmentation``), and refused in one line where the input kind cannot take it."""

from __future__ import annotations

from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features import RandomGain, build_augment
from esc50_lightning.features.spectrogram import num_frames

# spectrogram-level augmentation: refused with ``feature: waveform`` (an encoder masks its own input)
SPECTROGRAM_AUGMENTS = ("freq_masks", "time_masks", "time_stretch", "freq_shift", "crop_seconds")


def training_augmentation(augment: dict, feature: str, sample_rate: int, hop_length: int
                          ) -> tuple[RandomGain, nn.Module]:
    """``(gain, augment)`` from the fields of an ``Augmentation`` (``asdict``): the gain goes before
    normalisation (linear on waveforms, in dB on spectrograms), the rest after it."""
    augment = dict(augment)
    if feature == "waveform":
        spectral = [f"data.augment.{k}" for k in SPECTROGRAM_AUGMENTS if augment[k]]
        if spectral:
            raise ESC50Error(f"{', '.join(spectral)} act on spectrograms; with data.feature waveform the encoder "
                             "computes its own features and masks them itself (--model.net.init_args.freq_masks, "
                             "time_masks ...); keep data.augment to gain_db and time_shift")
    gain = RandomGain(augment.pop("gain_db"), linear=feature == "waveform")
    crop_seconds = augment.pop("crop_seconds")
    if crop_seconds < 0:
        raise ESC50Error(f"data.augment.crop_seconds must be >= 0, got {crop_seconds}")
    crop_frames = num_frames(int(round(sample_rate * crop_seconds)), hop_length) if crop_seconds else 0
    return gain, build_augment(**augment, crop_frames=crop_frames)
