"""``esc50-lightning serve`` as a user meets it: a real server on 127.0.0.1 (a free port) in its own
process, a tiny checkpoint, requests over HTTP, and the page in headless Chromium."""

import base64
import http.client
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from esc50_lightning.cli import main

from .conftest import synth
from .test_cli import fast_args

pytest.importorskip("litserve")
pytest.importorskip("multipart")
REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 600_000  # above the 5 s 44.1 kHz clip (441 kB), below two of it


@pytest.fixture(scope="module")
def ckpt(tiny_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve_train")
    main(["fit", *fast_args(tiny_root, work / "cache", epochs=1), "--data.val_strategy=none",
          f"--trainer.default_root_dir={work}"])
    (path,) = work.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``esc50-lightning serve`` in a process of its own (its own session, so that nothing it
    started outlives the tests), ready once ``GET /health`` says ok."""

    def __init__(self, ckpt: Path, log: Path, *options: str) -> None:
        self.port, self.log = free_port(), log
        args = [sys.executable, "-m", "esc50_lightning", "serve", "--ckpt", str(ckpt), "--port", str(self.port),
                "--max_bytes", str(MAX_BYTES), "--max_seconds", "60", "--max_batch_size", "8", *options]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                         start_new_session=True)
        for _ in range(600):  # at most ~150 s: each round waits a quarter second on the process itself
            if self.health() == (200, "ok"):
                return
            try:
                self.proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"serve exited with {self.proc.returncode}:\n{log.read_text()}")
        self.stop()
        raise AssertionError(f"serve not healthy within the bound:\n{log.read_text()}")

    def health(self) -> tuple[int, str] | None:
        try:
            status, body = self.request("GET", "/health")
            return status, body.decode()
        except OSError:
            return None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                connection: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
        conn = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            if connection is None:
                conn.close()

    def predict(self, data: bytes, content_type: str = "audio/wav", form: bool = True, query: str = "",
                connection: http.client.HTTPConnection | None = None) -> tuple[int, dict]:
        if form:
            boundary = uuid.uuid4().hex
            body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip"\r\n'
                    f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        else:
            body, headers = data, {"Content-Type": content_type}
        status, answer = self.request("POST", f"/predict{query}", body, headers, connection)
        return status, json.loads(answer)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # LitServe stops its workers and servers on the way out
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its session still there
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    srv = Server(ckpt, tmp_path_factory.mktemp("serve") / "serve.log")
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0 and "serve: stopped" in srv.log.read_text()  # a clean stop


def wav_bytes(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 5 s clip (44.1 kHz WAV) and a 12 s one (8 kHz FLAC), as files and as bytes."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    short, long = folder / "dog.wav", folder / "long.flac"
    sf.write(short, synth(0, 5.0, 44100, rng), 44100)
    sf.write(long, np.concatenate([synth(2, 6.0, 8000, rng), synth(1, 6.0, 8000, rng)]), 8000)
    return {"short": short, "long": long}


def classify(ckpt, path, capsys) -> dict:
    main(["classify", "--ckpt", str(ckpt), str(path), "--json", "--windows"])
    return json.loads(capsys.readouterr().out)["results"][0]


def test_top_class_equals_classify(server, ckpt, clips, capsys):
    expected = classify(ckpt, clips["short"], capsys)
    status, answer = server.predict(clips["short"].read_bytes())
    assert status == 200 and "windows" not in answer and answer["seconds"] == expected["seconds"] == 5.0
    assert answer["top"][0]["class"] == expected["top"][0]["class"]
    assert [t["class"] for t in answer["top"]] == [t["class"] for t in expected["top"]]
    np.testing.assert_allclose([t["probability"] for t in answer["top"]],
                               [t["probability"] for t in expected["top"]], atol=2e-4)


def test_long_file_answers_per_window(server, ckpt, clips, capsys):
    expected = classify(ckpt, clips["long"], capsys)
    status, answer = server.predict(clips["long"].read_bytes(), "audio/flac", form=False, query="?spectrogram=1")
    assert status == 200 and answer["seconds"] == 12.0
    assert [w["start"] for w in answer["windows"]] == [w["start"] for w in expected["windows"]] == [0, 2.5, 5, 7]
    assert [w["top"][0]["class"] for w in answer["windows"]] == [w["class"] for w in expected["windows"]]
    assert answer["spectrogram"]["image"].startswith("data:image/png;base64,")


def bad_inputs(clips) -> list[tuple[str, bytes, str, bool, int, str]]:
    rate = 8000
    nan = wav_bytes(np.full(100, np.nan), rate, subtype="FLOAT")
    whole = clips["short"].read_bytes()
    return [
        ("not audio", b"hello, I am a text file" * 10, "audio/wav", True, 400, "not audio"),
        ("empty", b"", "audio/wav", True, 400, "empty upload"),
        ("empty raw body", b"", "application/octet-stream", False, 400, "empty upload"),
        ("too big", b"RIFF" + b"\0" * (MAX_BYTES + 1), "audio/wav", False, 413, "too big"),
        ("too big in a form", whole * 2, "audio/wav", True, 413, "too big"),
        ("too long", wav_bytes(np.zeros(rate * 61), rate, "FLAC"), "audio/flac", True, 413, "too long"),
        ("unsupported type", whole, "text/plain", True, 415, "unsupported type 'text/plain'"),
        ("unsupported raw type", whole, "application/json", False, 415, "unsupported type"),
        ("an MP3", b"ID3\x04\0\0\0\0\0\0" + b"\0" * 100, "audio/mpeg", False, 415, "unsupported type"),
        ("MP3 bytes named WAV", b"ID3\x04\0\0\0\0\0\0" + b"\0" * 100, "audio/wav", True, 415, "MP3"),
        ("NaN samples", nan, "audio/wav", True, 400, "NaN"),
        ("truncated", whole[:3000], "audio/wav", True, 400, "truncated"),
        ("corrupt", b"RIFF\x00\x01\x00\x00WAVE" + b"junk" * 50, "audio/wav", False, 400, "cannot decode"),
    ]


def test_every_bad_input_gets_its_4xx_and_the_server_keeps_serving(server, clips):
    good = clips["short"].read_bytes()
    for what, data, content_type, form, status, words in bad_inputs(clips):
        got, answer = server.predict(data, content_type, form)
        assert (got, list(answer)) == (status, ["error"]), what
        assert words in answer["error"] and "\n" not in answer["error"], (what, answer)
        assert server.predict(good)[0] == 200, f"after {what}"
    status, body = server.request("POST", "/predict", b'{"audio": "AAAA"}', {"Content-Type": "application/json"})
    assert status == 415  # the internal request form cannot be sent from outside
    assert server.request("GET", "/nowhere")[0] == 404 and server.request("GET", "/predict")[0] == 405


def test_eight_concurrent_clients(server):
    data = wav_bytes(synth(1, 1.0, 8000, np.random.default_rng(1)), 8000)  # 1 s at the model's rate: cheap to decode

    def client(_: int) -> list[tuple[int, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            return [(s, a["top"][0]["class"]) for s, a in (server.predict(data, connection=conn) for _ in range(25))]
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        answers = [a for one in pool.map(client, range(8)) for a in one]
    assert len(answers) == 200 and {status for status, _ in answers} == {200}
    assert len({top for _, top in answers}) == 1


def test_health_info_and_page_files(server, ckpt):
    assert server.health() == (200, "ok")
    status, body = server.request("GET", "/info")
    info = json.loads(body)["model"]
    assert status == 200 and info["sample_rate"] == 8000 and info["classes"][:4] == ["dog", "rooster", "rain", "crow"]
    assert info["checkpoints"][0]["path"] == str(ckpt) and info["checkpoints"][0]["data"]["n_mels"] == 32
    assert info["max_bytes"] == MAX_BYTES and info["batching"]["max_batch_size"] == 8
    for path, kind in [("/", b"<!doctype html>"), ("/page.js", b'"use strict"'), ("/page.css", b":root")]:
        status, body = server.request("GET", path)
        assert status == 200 and kind in body, path
    page = server.request("GET", "/")[1].decode() + server.request("GET", "/page.js")[1].decode()
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere: it works offline


def test_serve_refuses_bad_arguments_in_one_line(ckpt, tmp_path, capsys):
    for argv, words in [(["--ckpt", str(tmp_path / "none.ckpt")], "checkpoint not found"),
                        (["--ckpt", str(ckpt), "--host", "example.org"], "--host 'example.org'"),
                        (["--ckpt", str(ckpt), "--overlap", "1"], "--overlap")]:
        with pytest.raises(SystemExit) as exit_:
            main(["serve", *argv, "--port", str(free_port())])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("esc50-lightning: error:") and words in err and "\n" not in err


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(chromium() is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_page_in_headless_chromium(server, ckpt, clips, capsys, tmp_path):
    """Choose a WAV in the page's file input; the page shows classify's top class and a spectrogram."""
    expected = classify(ckpt, clips["short"], capsys)["top"][0]["class"]
    spec = importlib.util.spec_from_file_location("screenshot", REPO / "bench" / "tensorboard_screenshot.py")
    browser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser)  # its DevTools client: one browser driver in the repository
    with browser.Page((1000, 1200)) as page:
        page.call("Page.enable")
        page.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
        browser.wait_for("the page", lambda: page.js("document.readyState === 'complete' && "
                                                     "!document.getElementById('model').textContent.includes('loading')"),
                         60)
        root = page.call("DOM.getDocument")["root"]["nodeId"]
        node = page.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
        page.call("DOM.setFileInputFiles", nodeId=node, files=[str(clips["short"])])
        state = browser.wait_for("an answer", lambda: page.js(
            "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state"), 60)
        assert state == "done", page.js("document.getElementById('status').textContent")
        assert page.js("document.getElementById('top-class').textContent") == expected
        assert page.js("document.querySelectorAll('#bars .row').length") == 5
        assert browser.wait_for("the spectrogram", lambda: page.js(
            "document.getElementById('spec-image').complete && document.getElementById('spec-image').naturalWidth"))
        shot = page.call("Page.captureScreenshot", format="png")["data"]
    png = tmp_path / "serve_page.png"
    png.write_bytes(base64.b64decode(shot))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
