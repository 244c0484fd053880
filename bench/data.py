"""Decode all ESC-50 clips once (cold), then reload the cached tensor (warm); median of N runs.

    ESC50_ROOT=/path/to/ESC-50 python bench/data.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, timed, write  # noqa: E402

from esc50_lightning.data.cache import cached_clips  # noqa: E402
from esc50_lightning.data.datamodule import ESC50DataModule  # noqa: E402
from esc50_lightning.data.meta import load_metadata  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    root = data_root()
    meta = load_metadata(root)
    paths = [root / "audio" / f for f in meta["filename"]]
    cache = Path(tempfile.mkdtemp(prefix="esc50-bench-"))

    def cold():
        shutil.rmtree(cache, ignore_errors=True)
        return cached_clips(paths, args.sample_rate, cache)

    def warm():
        return cached_clips(paths, args.sample_rate, cache).sum()  # touch every sample

    def datamodule_warm():
        dm = ESC50DataModule(root=str(root), cache_dir=str(cache), sample_rate=args.sample_rate)
        dm.setup("fit")
        return dm.inputs.shape

    cold_s, cold_all, waves = timed(cold, args.repeats)
    warm_s, warm_all, _ = timed(warm, args.repeats)
    datamodule_warm()  # first call computes and caches features
    dm_s, dm_all, shape = timed(datamodule_warm, args.repeats)
    shutil.rmtree(cache, ignore_errors=True)
    figures = {
        "clips": len(paths), "sample_rate": args.sample_rate, "tensor_shape": list(waves.shape),
        "cold_decode_seconds": round(cold_s, 3), "cold_runs": cold_all,
        "warm_reload_seconds": round(warm_s, 4), "warm_runs": warm_all,
        "datamodule_setup_warm_seconds": round(dm_s, 4), "datamodule_runs": dm_all,
        "feature_shape": list(shape), "cold_over_warm": round(cold_s / warm_s, 1),
    }
    print(f"{len(paths)} clips at {args.sample_rate} Hz: cold decode {cold_s:.2f} s, cached reload "
          f"{warm_s:.3f} s ({cold_s / warm_s:.0f}x), DataModule setup with warm caches {dm_s:.3f} s")
    print(f"wrote {write('data', figures)}")


if __name__ == "__main__":
    main()
