import http.server
import threading
import zipfile

import pytest

from esc50_lightning.cli import main
from esc50_lightning.data.download import download, ensure_dataset, install_archive, is_installed
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
        root = ensure_dataset(tmp_path / "dl2" / "ESC-50-master", url)
        assert is_installed(root)
    finally:
        server.shutdown()


def test_offline_message_names_url_and_archive_option(tmp_path):
    with pytest.raises(ESC50Error, match="--archive"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "x.zip")
