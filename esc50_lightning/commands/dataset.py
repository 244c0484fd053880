"""``esc50-lightning data fetch|verify|info``: install, check and describe a dataset root."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from esc50_lightning.data.audio import CLIP_SECONDS, read_audio
from esc50_lightning.data.download import (
    URL,
    default_root,
    ensure_dataset,
    install_archive,
    is_installed,
    missing_dataset_error,
)
from esc50_lightning.data.meta import load_metadata
from esc50_lightning.errors import ESC50Error

SUBSET_FLAG = "--allow-subset"  # as this command's users type it, for load_metadata's error


def fetch(root: Path, archive: str | None, url: str) -> None:
    if archive:
        install_archive(archive, root)
    else:
        ensure_dataset(root, url, fetch=True)
    print(f"ESC-50 installed at {root}")


def verify(root: Path, allow_subset: bool) -> None:
    """Check metadata, and that every clip decodes to finite samples of the expected length."""
    if not is_installed(root):
        raise missing_dataset_error(root)
    meta = load_metadata(root, allow_subset=allow_subset, subset_hint=SUBSET_FLAG)
    paths = [root / "audio" / f for f in meta["filename"]]

    def check(path: Path) -> tuple[int | None, float | None, str | None]:
        try:
            data, rate = read_audio(path)
        except ESC50Error as err:
            return None, None, str(err)
        return rate, data.shape[0] / rate, None

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        checks = list(pool.map(check, paths))
    problems = [err for _, _, err in checks if err]
    problems += [f"{p}: lasts {d:.3f} s, expected {CLIP_SECONDS} s" for p, (_, d, err) in zip(paths, checks)
                 if not err and abs(d - CLIP_SECONDS) > 0.01]
    rates = Counter(rate for rate, _, err in checks if not err)
    print(f"{root}: {len(meta)} clips, {meta['target'].nunique()} classes, folds "
          f"{sorted(meta['fold'].unique().tolist())}, sample rates {dict(rates)}")
    for line in problems[:20]:
        print(f"  problem: {line}")
    if problems:
        raise ESC50Error(f"{root}: {len(problems)} clip(s) failed verification")
    print("verify: OK, every clip decodes and lasts 5 s")


def info(root: Path, allow_subset: bool) -> None:
    if not is_installed(root):
        raise missing_dataset_error(root)
    meta = load_metadata(root, allow_subset=allow_subset, subset_hint=SUBSET_FLAG)
    first = sf.info(root / "audio" / meta["filename"].iloc[0])
    print(f"root        {root}")
    print(f"clips       {len(meta)}")
    print(f"classes     {meta['target'].nunique()}")
    print(f"folds       {dict(sorted(Counter(meta['fold']).items()))}")
    print(f"audio       {first.samplerate} Hz, {first.channels} channel(s), {first.subtype} (first clip)")
    print(f"recordings  {meta['src_file'].nunique()} source files")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="esc50-lightning data", description=__doc__)
    parser.add_argument("action", choices=["fetch", "verify", "info"])
    parser.add_argument("--root", help="dataset root (default: $ESC50_ROOT or the cache folder)")
    parser.add_argument("--archive", help="fetch: install from this local copy of the official zip")
    parser.add_argument("--url", default=URL, help="fetch: where to download the archive from")
    parser.add_argument("--allow-subset", action="store_true", help="accept fewer than 2,000 clips")
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else default_root()
    if args.action == "fetch":
        fetch(root, args.archive, args.url)
    elif args.action == "verify":
        verify(root, args.allow_subset)
    else:
        info(root, args.allow_subset)
