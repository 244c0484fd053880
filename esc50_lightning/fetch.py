"""One home for every download: the ESC-50 archive and published encoder weights.

``fetch(url, dest, known_hash)`` gets ``url`` into ``dest`` once:

- through ``pooch.retrieve``, which checks the finished file against ``known_hash`` (``md5:...``
  or ``sha256:...``; ``None`` where the publisher gives none) and moves it into place only when
  it matches, so ``dest`` is whole and right or absent, never half-written;
- with our downloader (``ResumableDownloader``): a progress bar, and a download broken off
  (``Ctrl-C``, a lost connection) resumes from its ``<dest>.part`` with an HTTP ``Range`` request
  instead of starting over; ``file://`` URLs work too (a local mirror);
- under ``locks.file_lock`` on ``<dest>.lock`` (or a lock the caller already holds), so
  processes started together download once and the others wait, then find the file;
- offline, or on any failure to reach the URL: one ``ESC50Error`` line naming the URL to fetch
  by hand and the flag that takes the local file instead.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.locks import file_lock

log = logging.getLogger("esc50_lightning")
CHUNK = 1 << 20


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/esc50-lightning`` (default ``~/.cache/esc50-lightning``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esc50-lightning"


def weights_dir() -> Path:
    """Where published encoder weights are fetched to: ``<cache>/weights``."""
    return cache_root() / "weights"


class Unreachable(Exception):
    """The URL could not be read (offline, refused, not found); carries the reason."""


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes ``part`` with a
    ``Range`` request and shows a progress bar labelled ``label``. The finished bytes are renamed
    onto pooch's temporary ``output_file`` (same folder), which pooch checks, then moves into place."""

    def __init__(self, part: Path, label: str) -> None:
        self.part, self.label = part, label

    def __call__(self, url: str, output_file: str, pooch: object = None) -> None:
        part = self.part
        part.parent.mkdir(parents=True, exist_ok=True)
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise Unreachable(getattr(err, "reason", None) or err) from None
        with response:
            status = getattr(response, "status", None)
            if done and status != 206:  # the server ignored the range (or a file:// URL): start over
                done = 0
            total = int(response.headers.get("Content-Length") or 0) + done or None
            columns = (*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TransferSpeedColumn())
            try:
                with open(part, "ab" if done else "wb") as out, Progress(*columns, transient=False) as bar:
                    task = bar.add_task(self.label, total=total, completed=done)
                    while block := response.read(CHUNK):
                        out.write(block)
                        bar.advance(task, len(block))
            except (urllib.error.URLError, OSError) as err:  # cut off mid-way: the part stays for a resume
                raise Unreachable(getattr(err, "reason", None) or err) from None
        os.replace(part, output_file)


def fetch(
    url: str, dest: str | Path, known_hash: str | None = None, *, by_hand: str, label: str | None = None,
    lock: bool = True,
) -> Path:
    """``dest``, downloaded from ``url`` if it is not there yet (or does not match ``known_hash``).

    ``by_hand``: what a user without access does instead, e.g. ``"--model.net.init_args.weights
    FILE"``; it ends the one-line error when ``url`` cannot be reached. ``lock``: hold
    ``<dest>.lock`` while fetching (``False`` when the caller holds a lock of its own).
    """
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading ..." and hash lines: our bar says it
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    downloader = ResumableDownloader(part, label or dest.name)

    def retrieve() -> Path:
        try:
            return Path(pooch.retrieve(url, known_hash, fname=dest.name, path=dest.parent, downloader=downloader))
        except Unreachable as err:
            raise ESC50Error(f"cannot download {url} ({err}); fetch it by hand and use {by_hand}") from None
        except ValueError as err:  # pooch: the finished file's hash is not the published one (file removed)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ESC50Error(f"{url}: the download does not match the published checksum ({first}); "
                             f"it was removed: run again, or fetch it by hand and use {by_hand}") from None

    if not lock:
        return retrieve()
    lock_file = dest.with_name(dest.name + ".lock")
    with file_lock(lock_file, lambda: log.info(f"waiting for another process fetching {dest.name} (lock {lock_file})")):
        return retrieve()


def fetch_weights(url: str, file_name: str, known_hash: str | None, what: str) -> Path:
    """A published weights file in ``weights_dir()``, fetched once (one line when offline)."""
    return fetch(url, weights_dir() / file_name, known_hash, label=what,
                 by_hand=f"the downloaded {file_name} (or its folder) as the weights: "
                         "--model.net.init_args.weights PATH (fit, sweep) or --encoder.weights PATH (embed)")
