"""Serving speed: requests per second and p50 / p95 latency of ``esc50-lightning serve`` on 127.0.0.1.

ESC-50 clips (5 s each, re-encoded as 16-bit WAV in memory at their own rate) are sent as raw
``POST /predict`` bodies by 1 and by 8 concurrent clients (each with its own keep-alive
connection), to a server with batching on (``--max_batch_size``, ``--batch_timeout``) and off
(``--max_batch_size 1``); the same clips go through ``classify``'s code in this process, one after
another, as the reference. Every load is bounded by ``--requests`` and ``--seconds``. With
``--screenshot PNG`` the page is also photographed in headless Chromium with a clip uploaded.

    ESC50_ROOT=/path/to/ESC-50 python bench/serve.py --ckpt FOLD.ckpt [--screenshot docs/figures/serve_page.png]
    ESC50_ROOT=/path/to/ESC-50 python bench/serve.py --ckpt FOLD.ckpt --screenshot_only   # the page's picture alone
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from common import data_root, write
from tensorboard_screenshot import Page, free_port, wait_for

from esc50_lightning.training.checkpoints import load_ensemble
from esc50_lightning.training.inference import classify_file

TOP_CLASS = "document.getElementById('top-class').textContent"


def wav_clips(root: Path, n: int) -> tuple[list[str], list[bytes]]:
    """The names of the first ``n`` clips of the dataset (sorted) and the clips as 16-bit WAV files in memory."""
    names, out = [], []
    for path in sorted((root / "audio").iterdir())[:n]:
        data, rate = sf.read(path, dtype="float32")
        buffer = io.BytesIO()
        sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
        names.append(path.with_suffix(".wav").name)
        out.append(buffer.getvalue())
    return names, out


def summary(latencies: list[float], wall: float, errors: int) -> dict:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "seconds": round(wall, 3),
            "requests_per_second": round(len(latencies) / wall, 2) if wall else None,
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}
            if len(ms) else None}


def classify_in_process(ckpts: list[str], clips: list[bytes], requests: int, seconds: float) -> dict:
    """``classify_file`` (the ``classify`` command's code) on the clips one after another."""
    model = load_ensemble(ckpts)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(clips):
            paths.append(Path(tmp) / f"{i}.wav")
            paths[-1].write_bytes(data)
        classify_file(model, str(paths[0]))  # warm-up
        latencies, start = [], time.perf_counter()
        while len(latencies) < requests and time.perf_counter() - start < seconds:
            t = time.perf_counter()
            classify_file(model, str(paths[len(latencies) % len(paths)]))
            latencies.append(time.perf_counter() - t)
        return summary(latencies, time.perf_counter() - start, 0)


class Server:
    """``esc50-lightning serve`` in its own session on a free port, until the ``with`` block ends."""

    def __init__(self, ckpts: list[str], *options: str) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "esc50_lightning", "serve", "--ckpt", *ckpts, "--port", str(self.port),
                     *options]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for("serve", lambda: self.proc.poll() is None and self.post(None, "GET", "/health")[0] == 200, 300)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def post(self, data: bytes | None, method: str = "POST", path: str = "/predict",
             conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
        own = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            own.request(method, path, body=data, headers={"Content-Type": "audio/wav"} if data else {})
            response = own.getresponse()
            return response.status, response.read()
        finally:
            if conn is None:
                own.close()

    def load(self, clips: list[bytes], clients: int, requests: int, seconds: float) -> dict:
        """``clients`` threads sending clips until ``requests`` were sent or ``seconds`` passed."""
        lock, sent, latencies, errors = threading.Lock(), [0], [], [0]
        start = time.perf_counter()

        def client(_: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                while True:
                    with lock:
                        if sent[0] >= requests or time.perf_counter() - start >= seconds:
                            return
                        i, sent[0] = sent[0], sent[0] + 1
                    t = time.perf_counter()
                    status, _ = self.post(clips[i % len(clips)], conn=conn)
                    with lock:
                        latencies.append(time.perf_counter() - t)
                        errors[0] += status != 200
            finally:
                conn.close()

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        return summary(latencies, time.perf_counter() - start, errors[0])


def screenshot(server: Server, name: str, clip: bytes, png: Path) -> None:
    """The page with ``clip`` chosen in its file input and answered."""
    with tempfile.TemporaryDirectory() as tmp, Page((1000, 1000)) as page:
        path = Path(tmp) / name
        path.write_bytes(clip)
        page.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
        wait_for("the page", lambda: page.js("document.readyState === 'complete' && "
                                             "!document.getElementById('model').textContent.includes('loading')"), 60)
        node = page.call("DOM.querySelector", nodeId=page.call("DOM.getDocument")["root"]["nodeId"], selector="#file")
        page.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])
        wait_for("the answer", lambda: page.js("document.body.dataset.state === 'done' && "
                                               "document.getElementById('spec-image').naturalWidth > 0"), 60)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
        print(f"{png}: the page answering {page.js(TOP_CLASS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", nargs="+", required=True, help="the checkpoint(s) to serve")
    parser.add_argument("--clips", type=int, default=40, help="distinct ESC-50 clips sent, in turn")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement, at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per measurement, at most")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--batch_timeout", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--screenshot", default=None, help="also photograph the page into this PNG")
    parser.add_argument("--screenshot_only", action="store_true", help="only the photograph: no load, no JSON")
    parser.add_argument("--name", default="serve")
    args = parser.parse_args()
    names, clips = wav_clips(data_root(), args.clips)
    if args.screenshot_only:
        with Server(args.ckpt, "--accelerator", args.accelerator) as server:
            screenshot(server, names[0], clips[0], Path(args.screenshot or "docs/figures/serve_page.png"))
        return
    rows = [{"server": "classify in-process", "clients": 1, **classify_in_process(args.ckpt, clips, args.requests,
                                                                                   args.seconds)}]
    for batch in (args.max_batch_size, 1):
        options = ["--max_batch_size", str(batch), "--batch_timeout", str(args.batch_timeout), "--workers",
                   str(args.workers), "--accelerator", args.accelerator, "--max_bytes", str(50_000_000)]
        with Server(args.ckpt, *options) as server:
            server.load(clips, 1, min(10, args.requests), args.seconds)  # warm-up
            for clients in args.clients:
                rows.append({"server": f"serve, batching {'on' if batch > 1 else 'off'}", "max_batch_size": batch,
                             "clients": clients, **server.load(clips, clients, args.requests, args.seconds)})
            if args.screenshot and batch > 1:
                screenshot(server, names[0], clips[0], Path(args.screenshot))
    reference = rows[0]["requests_per_second"]
    print("| server | clients | requests | errors | req/s | vs classify | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        r["vs_classify"] = round(r["requests_per_second"] / reference, 2)
        print(f"| {r['server']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_second']} | "
              f"{r['vs_classify']}x | {r['latency_ms']['p50']} | {r['latency_ms']['p95']} |")
    clip_seconds = sf.info(io.BytesIO(clips[0])).duration
    path = write(args.name, {"checkpoints": args.ckpt, "clips": len(clips), "clip_seconds": clip_seconds,
                             "batch_timeout": args.batch_timeout, "workers": args.workers,
                             "accelerator": args.accelerator, "rows": rows})
    print(f"results in {path}")


if __name__ == "__main__":
    main()
