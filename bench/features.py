"""Log-mel of every ESC-50 clip, three ways in one run (median of N):

  (a) librosa, clip by clip: librosa.load at the native rate + melspectrogram + power_to_db
  (b) ours end to end through ESC50DataModule: cold (empty cache) and warm (caches in place)
  (c) the floor: soundfile decode of every file, and torch.stft + mel product on a tensor in memory

    ESC50_ROOT=/path/to/ESC-50 python bench/features.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, timed, write  # noqa: E402

from esc50_lightning.data.datamodule import ESC50DataModule  # noqa: E402
from esc50_lightning.data.meta import load_metadata  # noqa: E402
from esc50_lightning.features import SpectrogramFrontend, compute_features  # noqa: E402

N_FFT, HOP, N_MELS = 1024, 512, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-librosa", action="store_true")
    args = parser.parse_args()
    root = data_root()
    meta = load_metadata(root)
    paths = [root / "audio" / f for f in meta["filename"]]
    rate = sf.info(paths[0]).samplerate
    cache = Path(tempfile.mkdtemp(prefix="esc50-bench-"))

    def librosa_path():
        import librosa

        out = []
        for p in paths:
            y, sr = librosa.load(p, sr=None)
            s = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
            out.append(librosa.power_to_db(s, top_db=80.0))
        return np.stack(out)

    def datamodule(fresh: bool):
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
        dm = ESC50DataModule(root=str(root), cache_dir=str(cache), sample_rate=rate, n_fft=N_FFT,
                             hop_length=HOP, n_mels=N_MELS)
        return dm.all_features()

    def decode_floor():
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda p: sf.read(p, dtype="float32")[0], paths))

    waves = torch.from_numpy(np.stack(decode_floor()))
    fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, rate / 2, N_MELS, rate, "slaney", "slaney")
    window = torch.hann_window(N_FFT)

    def feature_floor():
        spec = torch.stft(waves, N_FFT, HOP, window=window, center=True, pad_mode="constant",
                          return_complex=True).abs().pow(2)
        return torch.matmul(spec.transpose(1, 2), fb)

    frontend = SpectrogramFrontend("log_mel", rate, N_FFT, None, HOP, N_MELS)

    def our_features():
        return compute_features(frontend, waves, "cpu", batch_size=len(waves))

    results = {}
    cold_s, cold_runs, ours = timed(lambda: datamodule(True), args.repeats)
    warm_s, warm_runs, _ = timed(lambda: datamodule(False), args.repeats)
    dec_s, dec_runs, _ = timed(decode_floor, args.repeats)
    floor_s, floor_runs, _ = timed(feature_floor, args.repeats)
    feat_s, feat_runs, _ = timed(our_features, args.repeats)
    results.update(
        ours_cold_seconds=round(cold_s, 3), ours_cold_runs=cold_runs,
        ours_warm_seconds=round(warm_s, 4), ours_warm_runs=warm_runs,
        decode_floor_seconds=round(dec_s, 3), decode_floor_runs=dec_runs,
        feature_floor_seconds=round(floor_s, 3), feature_floor_runs=floor_runs,
        ours_features_in_memory_seconds=round(feat_s, 3), ours_features_runs=feat_runs,
        cold_over_floor=round(cold_s / (dec_s + floor_s), 2),
        features_over_floor=round(feat_s / floor_s, 2),
    )
    if not args.skip_librosa:
        lib_s, lib_runs, ref = timed(librosa_path, args.repeats)
        diff = np.abs(ours.numpy() - ref)
        results.update(
            librosa_seconds=round(lib_s, 3), librosa_runs=lib_runs,
            librosa_over_ours_cold=round(lib_s / cold_s, 2), librosa_over_ours_warm=round(lib_s / warm_s, 1),
            max_abs_diff_db=float(diff.max()), mean_abs_diff_db=float(diff.mean()), tolerance_db=0.01,
            equal_within_tolerance=bool(diff.max() < 0.01),
        )
    shutil.rmtree(cache, ignore_errors=True)
    figures = {"clips": len(paths), "sample_rate": rate, "n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS,
               **results}
    for key, value in figures.items():
        if not key.endswith("_runs"):
            print(f"{key:34s} {value}")
    print(f"wrote {write('features', figures)}")


if __name__ == "__main__":
    main()
