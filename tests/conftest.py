"""Synthetic ESC-50 trees and archives: tones, chirps and noise the tests generate themselves."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

RATE = 44100
CLASSES = {0: "dog", 1: "rooster", 2: "rain", 3: "crow"}
CLIPS_PER_FOLD = 2  # per class


def synth(target: int, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A clip whose class is easy to hear: low tone, high tone, noise, or noise bursts."""
    t = np.arange(int(seconds * rate)) / rate
    if target == 0:
        x = 0.5 * np.sin(2 * np.pi * rng.uniform(200, 260) * t)
    elif target == 1:
        x = 0.5 * np.sin(2 * np.pi * rng.uniform(1800, 2200) * t)
    elif target == 2:
        x = 0.3 * rng.standard_normal(t.size)
    else:
        x = 0.5 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 4 * t) > 0.7)
    return x.astype(np.float32)


def make_tree(root: Path, rate: int = RATE, seconds: float = 5.0, seed: int = 0) -> Path:
    """A tiny ESC-50 root: 4 classes x 5 folds x 2 clips, every third clip stereo."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    n = 0
    for fold in range(1, 6):
        for target, name in CLASSES.items():
            for take in range(CLIPS_PER_FOLD):
                src = 100000 + n
                fname = f"{fold}-{src}-{'AB'[take]}-{target}.wav"
                x = synth(target, seconds, rate, rng)
                if n % 3 == 0:
                    x = np.stack([x, 0.5 * x], axis=1)
                sf.write(root / "audio" / fname, x, rate, subtype="PCM_16")
                rows.append(dict(filename=fname, fold=fold, target=target, category=name, esc10=False,
                                 src_file=src, take="AB"[take]))
                n += 1
    pd.DataFrame(rows).to_csv(root / "meta" / "esc50.csv", index=False)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("esc50") / "ESC-50-master")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh tree a test may damage."""
    return make_tree(tmp_path / "ESC-50-master", seconds=1.0)


def make_archive(root: Path, archive: Path) -> Path:
    """Zip ``root`` as the official download is laid out: ``ESC-50-master/{audio,meta}/...``."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, Path("ESC-50-master") / path.relative_to(root))
    return archive


# Small, fast settings for DataModule tests: 8 kHz, short FFTs.
FAST_DATA = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, batch_size=8,
                 allow_subset=True, val_fraction=0.25)
