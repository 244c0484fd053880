"""Install ESC-50: download the official archive (resumable), verify, extract atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from esc50_lightning.errors import ESC50Error

URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esc50-lightning"


def default_root() -> Path:
    """``ESC50_ROOT`` if set, else ``<cache>/ESC-50-master``."""
    env = os.environ.get("ESC50_ROOT")
    return Path(env) if env else default_cache_dir() / "ESC-50-master"


def is_installed(root: str | Path) -> bool:
    return (Path(root) / "meta" / "esc50.csv").is_file() and (Path(root) / "audio").is_dir()


def download(url: str, dest: Path, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` left by an interrupted run."""
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ESC50Error(
            f"cannot download {url} ({reason}); get the archive elsewhere and run "
            "`esc50-lightning data fetch --archive FILE.zip`"
        ) from None
    with response:
        if done and response.status != 206:  # server ignored the range: start over
            done = 0
        total = int(response.headers.get("Content-Length") or 0) + done or None
        mode = "ab" if done else "wb"
        columns = (*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(),
                   TransferSpeedColumn())
        with open(part, mode) as out, Progress(*columns) as bar:
            task = bar.add_task(f"ESC-50 {dest.name}", total=total, completed=done)
            while block := response.read(chunk):
                out.write(block)
                bar.advance(task, len(block))
    os.replace(part, dest)
    return dest


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


def ensure_dataset(root: str | Path | None = None, url: str = URL) -> Path:
    """Return an installed ESC-50 root, downloading the official archive when it is missing."""
    root = Path(root) if root else default_root()
    if is_installed(root):
        return root
    archive = download(url, root.parent / "ESC-50-master.zip")
    install_archive(archive, root)
    archive.unlink()
    return root
