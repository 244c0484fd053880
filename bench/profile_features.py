"""Where the cold feature path spends its time: cProfile of ``ESC50DataModule.all_features()``
with an empty cache (decode, STFT, mel, dB, cache write), and the power-spectrum expression it
uses against the one it replaced (``view_as_real(stft).square().sum(-1)``), on one batch and
end to end.

    ESC50_ROOT=/path/to/ESC-50 python bench/profile_features.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, timed, write  # noqa: E402

from esc50_lightning.data.audio import decode_clips  # noqa: E402
from esc50_lightning.data.datamodule import ESC50DataModule  # noqa: E402
from esc50_lightning.data.meta import load_metadata  # noqa: E402
from esc50_lightning.features.spectrogram import PowerSpectrogram  # noqa: E402


def old_forward(self: PowerSpectrogram, wave: torch.Tensor) -> torch.Tensor:
    """The power expression before this benchmark: sum over ``view_as_real``'s last dim."""
    shape = wave.shape
    spec = torch.stft(wave.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length,
                      self.window, center=True, pad_mode="constant", return_complex=True)
    power = torch.view_as_real(spec).square().sum(-1)
    return power.reshape(*shape[:-1], *power.shape[-2:])


def cold(root: Path) -> torch.Tensor:
    cache = tempfile.mkdtemp(prefix="esc50-profile-")
    try:
        return ESC50DataModule(root=str(root), cache_dir=cache).all_features()
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = data_root()
    cold(root)  # imports, allocator and page cache warmed before timing

    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    cold(root)
    profile.disable()
    profiled = time.perf_counter() - start
    stats = pstats.Stats(profile).sort_stats("tottime")
    top = [{"function": f"{Path(file).name}:{line}({name})", "calls": nc, "seconds": round(tt, 3)}
           for (file, line, name), (_, nc, tt, _, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]]

    meta = load_metadata(root)
    waves = decode_clips([root / "audio" / f for f in meta["filename"][:128]], 16000)
    stft = PowerSpectrogram(1024, None, 512)
    new_s, new_runs, new = timed(lambda: stft(waves), args.repeats)
    old_s, old_runs, old = timed(lambda: old_forward(stft, waves), args.repeats)

    cold_new = [timed(lambda: cold(root), 1)[0] for _ in range(args.repeats)]
    original = PowerSpectrogram.forward
    PowerSpectrogram.forward = old_forward
    try:
        cold_old = [timed(lambda: cold(root), 1)[0] for _ in range(args.repeats)]
    finally:
        PowerSpectrogram.forward = original

    figures = {
        "profiled_cold_seconds": round(profiled, 3), "top_by_own_time": top,
        "power_batch_clips": len(waves), "power_new_seconds": round(new_s, 4), "power_new_runs": new_runs,
        "power_old_seconds": round(old_s, 4), "power_old_runs": old_runs,
        "power_old_over_new": round(old_s / new_s, 2), "power_max_abs_diff": float((new - old).abs().max()),
        "cold_new_seconds": round(statistics.median(cold_new), 3), "cold_new_runs": [round(t, 3) for t in cold_new],
        "cold_old_power_seconds": round(statistics.median(cold_old), 3),
        "cold_old_power_runs": [round(t, 3) for t in cold_old],
    }
    print(f"cold all_features under cProfile: {profiled:.3f} s; top by own time:")
    for row in top:
        print(f"  {row['seconds']:7.3f} s  {row['calls']:6d}  {row['function']}")
    print(f"power of {len(waves)} clips: new {new_s * 1000:.1f} ms, old {old_s * 1000:.1f} ms "
          f"({old_s / new_s:.2f}x), max difference {figures['power_max_abs_diff']}")
    print(f"cold all_features: {figures['cold_new_seconds']} s now, {figures['cold_old_power_seconds']} s "
          "with the old power expression")
    print(f"wrote {write('profile_features', figures)}")


if __name__ == "__main__":
    main()
