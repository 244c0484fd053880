"""Install ESC-50: download the official archive (resumable), verify, extract atomically.

Only the default root (no root given, ``ESC50_ROOT`` unset) is downloaded into on demand; a root
the user named is only ever downloaded into by ``esc50-lightning data fetch``, so that a typo
costs one line, not a 600 MB download into the typo's parent. A download holds a lock file beside
the root: processes started together on a fresh machine (``sweep --jobs``, Ray, a SLURM array
sharing a filesystem) wait for the first one, then find the dataset installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from esc50_lightning.errors import ESC50Error
from esc50_lightning.fetch import cache_root, fetch
from esc50_lightning.locks import file_lock

URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
ARCHIVE_HASH = None  # none is published for the archive GitHub builds (see ``download``)
log = logging.getLogger("esc50_lightning")


def default_cache_dir() -> Path:
    return cache_root()


def default_root() -> Path:
    """``ESC50_ROOT`` if set, else ``<cache>/ESC-50-master``."""
    env = os.environ.get("ESC50_ROOT")
    return Path(env) if env else default_cache_dir() / "ESC-50-master"


def is_installed(root: str | Path) -> bool:
    return (Path(root) / "meta" / "esc50.csv").is_file() and (Path(root) / "audio").is_dir()


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` (``fetch``: progress bar, resuming ``dest.part`` left by an
    interrupted run, installed only when whole). No published checksum: GitHub builds the archive
    of the repository's branch on request, so its bytes (and any hash of them) change with the
    repository and the zip tool; ``install_archive`` checks the archive instead (every member's
    CRC, ``meta/esc50.csv``, clips under ``audio/``). The caller holds ``dataset_lock``."""
    return fetch(url, dest, ARCHIVE_HASH, by_hand="`esc50-lightning data fetch --archive FILE.zip`",
                 label=f"ESC-50 {Path(dest).name}", lock=False)


def _archive_top(zf: zipfile.ZipFile, archive: Path) -> str:
    """The folder inside the archive that holds ``meta/esc50.csv`` (``ESC-50-master/``)."""
    for name in zf.namelist():
        if name.endswith("meta/esc50.csv"):
            return name[: -len("meta/esc50.csv")]
    raise ESC50Error(f"{archive}: not an ESC-50 archive (no meta/esc50.csv inside)")


def install_archive(archive: str | Path, root: str | Path) -> Path:
    """Extract an ESC-50 zip into ``root`` through a temporary folder and one rename.

    A crash mid-way leaves only the temporary folder, so a half-extracted dataset never looks
    installed.
    """
    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise ESC50Error(f"{archive}: archive not found")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise ESC50Error(f"{archive}: not a valid zip archive ({err})") from None
    with zf:
        top = _archive_top(zf, archive)
        bad = zf.testzip()
        if bad is not None:
            raise ESC50Error(f"{archive}: corrupt member {bad}")
        members = [m for m in zf.namelist() if m.startswith(top)]
        if not any(m.startswith(top + "audio/") and not m.endswith("/") for m in members):
            raise ESC50Error(f"{archive}: no audio/ clips inside")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".esc50-extract-", dir=root.parent))
        try:
            zf.extractall(tmp, members)
            if root.exists():
                if is_installed(root):
                    return root
                root.rmdir()  # an empty placeholder folder; anything else is the user's
            os.replace(tmp / top, root)
        except OSError as err:
            raise ESC50Error(f"{root}: cannot install the dataset here ({err})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def lock_path(root: str | Path) -> Path:
    """``<root>.lock``, beside the root (the root itself appears only when installed)."""
    root = Path(root)
    return root.with_name(root.name + ".lock")


@contextmanager
def dataset_lock(root: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<root>.lock`` (waiting, with one line, while another
    process holds it). The kernel releases it when the holder exits, however it exits."""
    path = lock_path(root)
    with file_lock(path, lambda: log.info(f"waiting for another process installing ESC-50 into {root} (lock {path})")):
        yield


def missing_dataset_error(root: Path, source: str = "") -> ESC50Error:
    return ESC50Error(
        f"{root}{source}: no ESC-50 dataset here (no meta/esc50.csv and audio/); check the path, or install it "
        f"with `esc50-lightning data fetch --root {root}` (add `--archive ESC-50-master.zip` for a local copy)")


def ensure_dataset(root: str | Path | None = None, url: str = URL, fetch: bool = False) -> Path:
    """Return an installed ESC-50 root.

    A missing dataset is downloaded (``url``) only into the default root (``root`` None and
    ``ESC50_ROOT`` unset), or into any root with ``fetch`` (``data fetch``); a named root without
    ESC-50 is an ``ESC50Error`` that names it. The download holds ``dataset_lock(root)``: call this
    once before starting processes that would all need the dataset.
    """
    source = "" if root else " (from ESC50_ROOT)" if os.environ.get("ESC50_ROOT") else None
    root = Path(root) if root else default_root()
    if is_installed(root):
        return root
    if source is not None and not fetch:
        raise missing_dataset_error(root, source)
    with dataset_lock(root):
        if is_installed(root):  # installed by the process we waited for
            return root
        archive = download(url, root.with_name(root.name + ".zip"))
        install_archive(archive, root)
        archive.unlink()
    return root
