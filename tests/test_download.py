import http.server
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from esc50_lightning.cli import main
from esc50_lightning.data.download import dataset_lock, download, ensure_dataset, install_archive, is_installed
from esc50_lightning.errors import ESC50Error

from .conftest import make_archive


def test_fetch_from_archive_via_cli(tiny_root, tmp_path, capsys):
    archive = make_archive(tiny_root, tmp_path / "master.zip")
    root = tmp_path / "data" / "ESC-50-master"
    main(["data", "fetch", "--archive", str(archive), "--root", str(root)])
    assert is_installed(root)
    assert len(list((root / "audio").glob("*.wav"))) == 40
    assert not list(root.parent.glob(".esc50-extract-*"))  # temporary folder cleaned up
    main(["data", "info", "--root", str(root), "--allow-subset"])
    assert "clips       40" in capsys.readouterr().out


def test_bad_archives(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ESC50Error, match="not a valid zip"):
        install_archive(junk, tmp_path / "root")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/readme.txt", "hi")
    with pytest.raises(ESC50Error, match="not an ESC-50 archive"):
        install_archive(other, tmp_path / "root")
    assert not (tmp_path / "root").exists()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one file with HTTP Range support, as GitHub's archive server does."""

    payload = b""

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_interrupted_download_resumes(tiny_root, tmp_path):
    archive = make_archive(tiny_root, tmp_path / "master.zip")
    RangeHandler.payload = archive.read_bytes()
    server = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/master.zip"
        dest = tmp_path / "dl" / "ESC-50-master.zip"
        dest.parent.mkdir()
        half = len(RangeHandler.payload) // 2
        dest.with_name(dest.name + ".part").write_bytes(RangeHandler.payload[:half])  # a broken-off run
        download(url, dest)
        assert dest.read_bytes() == RangeHandler.payload
        root = tmp_path / "dl2" / "ESC-50-master"  # a named root: downloaded into by `data fetch` only
        main(["data", "fetch", "--root", str(root), "--url", url])
        assert is_installed(root)
    finally:
        server.shutdown()
    local = tmp_path / "dl3" / "ESC-50-master"  # a local copy by URL, as on a cluster without internet
    main(["data", "fetch", "--root", str(local), "--url", archive.as_uri()])
    assert is_installed(local) and not list(local.parent.glob("*.zip*"))


def test_offline_message_names_url_and_archive_option(tmp_path):
    with pytest.raises(ESC50Error, match="--archive"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "x.zip")


class CountingHandler(RangeHandler):
    """``RangeHandler`` that records each download it serves."""

    served: list[str] = []

    def do_GET(self):
        type(self).served.append(self.path)
        super().do_GET()


@pytest.fixture
def served_archive(tiny_root, tmp_path):
    """``(url, served)``: the tiny tree's archive on a loopback server that answers requests in
    parallel threads, and the list of downloads it served."""
    CountingHandler.payload = make_archive(tiny_root, tmp_path / "master.zip").read_bytes()
    CountingHandler.served = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/master.zip", CountingHandler.served
    server.shutdown()


def test_a_named_root_without_the_dataset_is_one_line_and_downloads_nothing(tmp_path, served_archive, monkeypatch,
                                                                            capsys):
    from esc50_lightning.data import ESC50DataModule

    url, served = served_archive
    typo = tmp_path / "dtaa" / "ESC-50-master"
    with pytest.raises(ESC50Error) as err:
        ensure_dataset(typo, url)
    message = str(err.value)
    assert message.startswith(f"{typo}: no ESC-50 dataset here") and "\n" not in message
    assert f"esc50-lightning data fetch --root {typo}" in message and "--archive" in message
    with pytest.raises(ESC50Error, match="no ESC-50 dataset here"):
        ESC50DataModule(root=str(typo)).load_all()
    monkeypatch.setenv("ESC50_ROOT", str(typo))  # a named root too: the README downloads only when it is unset
    with pytest.raises(ESC50Error, match=r"\(from ESC50_ROOT\): no ESC-50 dataset here"):
        ensure_dataset(None, url)
    for command in (["data", "verify"], ["data", "info"], ["plots", "waveform", "--out", str(tmp_path / "png")]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--root", str(typo)])
        assert exit_.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"{typo}: no ESC-50 dataset here" in line
    assert served == [] and not typo.parent.exists()  # no download, not even a folder in the typo's parent


def test_the_default_root_is_downloaded_on_demand(tmp_path, served_archive, monkeypatch):
    url, served = served_archive
    monkeypatch.delenv("ESC50_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = ensure_dataset(None, url)
    assert root == tmp_path / "cache" / "esc50-lightning" / "ESC-50-master" and is_installed(root)
    assert ensure_dataset(None, url) == root and len(served) == 1


# One process of a sweep on a fresh machine: waits for the go-ahead on stdin, then asks for the
# default root (XDG_CACHE_HOME set by the test) and prints it.
FOLD_PROCESS = """
import sys
from esc50_lightning.console import configure_console
from esc50_lightning.data.download import ensure_dataset
configure_console()
print("ready", flush=True)
sys.stdin.readline()
print(ensure_dataset(None, sys.argv[1]), flush=True)
"""


def start_fold_process(url, cache):
    env = {k: v for k, v in os.environ.items() if k != "ESC50_ROOT"} | {"XDG_CACHE_HOME": str(cache)}
    child = subprocess.Popen([sys.executable, "-c", FOLD_PROCESS, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "ready", child.communicate(timeout=60)
    return child


def finish(child):
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    return Path(out.strip().splitlines()[-1])


def test_a_process_waits_for_the_download_lock_then_finds_the_dataset(tiny_root, tmp_path, served_archive):
    url, served = served_archive
    root = tmp_path / "cache" / "esc50-lightning" / "ESC-50-master"
    with dataset_lock(root):  # this test is the process that is downloading
        child = start_fold_process(url, tmp_path / "cache")
        child.stdin.write("go\n")
        child.stdin.flush()
        for line in child.stderr:  # blocks until the child says it waits (or ends, on failure)
            if f"waiting for another process installing ESC-50 into {root}" in line:
                break
        else:
            pytest.fail(f"did not wait for the lock; served {served}")
        install_archive(make_archive(tiny_root, tmp_path / "mine.zip"), root)
    assert finish(child) == root and served == []  # it found our dataset and downloaded nothing


def test_processes_starting_together_on_a_fresh_machine_install_one_valid_root(tmp_path, served_archive):
    from esc50_lightning.data.meta import load_metadata

    url, served = served_archive
    children = [start_fold_process(url, tmp_path / "cache") for _ in range(2)]
    for child in children:  # both past their imports: now at once
        child.stdin.write("go\n")
        child.stdin.flush()
    roots = {finish(child) for child in children}
    (root,) = roots
    assert len(served) == 1  # one download; the other process waited for it
    assert len(load_metadata(root, allow_subset=True)) == 40 and len(list((root / "audio").glob("*.wav"))) == 40
    leftovers = [p.name for p in root.parent.iterdir() if p.name not in ("ESC-50-master", "ESC-50-master.lock")]
    assert leftovers == []  # no archive, no .part, no half-extracted folder
