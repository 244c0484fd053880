"""Pictures of TensorBoard over the committed sweeps, taken in a real headless browser.

1. writes a summary run (``training.summary``) for every committed sweep: ``bench/sweeps/<name>/summary``
   (and ``bench/sweeps/levers/<name>/summary``), aggregated from the folds' ``result.json``;
2. writes one HParams row per row of ``bench/results/classical.json`` (under ``--work``);
3. serves copies of them with ``tensorboard`` on 127.0.0.1 (a free port; stopped at the end) and
   photographs the HParams table (sorted by mean accuracy), the summary images and the
   fold-accuracy scalars with headless Chromium (Debian: ``apt-get install chromium``), driven
   over the DevTools protocol (a minimal websocket client below: no extra package), into
   ``docs/tensorboard_*.png``.

    python bench/tensorboard_screenshot.py
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from esc50_lightning.training.summary import write_classical_summary, write_sweep_summary
from esc50_lightning.training.sweep import FoldDir, collect

REPO = Path(__file__).resolve().parents[1]
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", "--force-device-scale-factor=1"]
SWEEP_COLUMNS = ["net", "epochs", "hop", "n_mels", "batch_size", "callbacks", "distill", "folds"]
CLASSICAL_COLUMNS = ["representation", "pooling", "classifier", "C", "norm"]
METRICS = ["hp/accuracy_mean", "hp/accuracy_std", "hp/f1_mean"]
# Polymer's elements live in shadow roots: find them through every one.
DEEP = ("const deep = (root, sel, out = []) => { root.querySelectorAll(sel).forEach(e => out.push(e)); "
        "root.querySelectorAll('*').forEach(e => e.shadowRoot && deep(e.shadowRoot, sel, out)); return out; };")


def summarise_sweep(sweep_dir: Path) -> Path | None:
    """The summary run of the sweep's tested folds, collected as ``sweep`` does (its committed
    result files left as they are); ``None`` for a folder without tested folds."""
    folds = [fold for fold in range(1, 6) if FoldDir(sweep_dir, fold).result() is not None]
    if not folds:
        return None
    return write_sweep_summary(sweep_dir, collect(sweep_dir.name, sweep_dir, folds))


def write_summaries(sweeps: Path, classical: Path, work: Path) -> tuple[dict[str, Path], Path]:
    """Summary runs of every sweep under ``sweeps`` (name -> summary folder) and of the classical grid."""
    runs = {}
    for sweep_dir in sorted([*sweeps.glob("*/"), *sweeps.glob("*/*/")]):
        summary = summarise_sweep(sweep_dir)
        if summary is not None:
            runs[str(sweep_dir.relative_to(sweeps))] = summary
            print(f"{summary}: largest file {max(f.stat().st_size for f in summary.iterdir())} bytes")
    return runs, write_classical_summary(work / "classical", json.loads(classical.read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, seconds: float = 180):
    """``check()``'s first truthy value, polled each half second."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {seconds} s")


def stage(runs: dict[str, Path], logdir: Path) -> Path:
    """Copies of the summary runs in one log dir, named by sweep (the fold runs beside the committed
    summaries carry Lightning's placeholder hparams experiment, which would take over the table)."""
    shutil.rmtree(logdir, ignore_errors=True)
    for name, folder in runs.items():
        shutil.copytree(folder, logdir / name)
    return logdir


class TensorBoard:
    """``tensorboard --logdir`` on 127.0.0.1 and a free port, for the ``with`` block."""

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                     "--port", str(self.port), "--load_fast", "false"]

    def __enter__(self) -> TensorBoard:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for("tensorboard", lambda: self.proc.poll() is None and json.loads(
                urllib.request.urlopen(f"{self.url}/data/runs", timeout=5).read()))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Page:
    """One headless Chromium tab driven over the DevTools protocol (a websocket: RFC 6455 text frames)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size, self.port, self.calls = size, free_port(), 0

    def __enter__(self) -> Page:
        exe = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
        if exe is None:
            raise SystemExit("no Chromium: apt-get install -y chromium")
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen([exe, *BROWSER_FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={self.size[0]},{self.size[1]}",
                                      f"--remote-debugging-port={self.port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            targets = wait_for("chromium", lambda: [t for t in json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/json/list", timeout=5).read()) if t["type"] == "page"], 60)
            self._connect(targets[0]["webSocketDebuggerUrl"])
            self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "sock", None):
            self.sock.close()
        stop(self.proc)
        for _ in range(20):  # the browser's helper processes may still be writing the profile for a moment
            shutil.rmtree(self.profile, ignore_errors=True)
            if not os.path.exists(self.profile):
                break
            time.sleep(0.5)

    def _connect(self, url: str) -> None:
        where = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((where.hostname, where.port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        end = self.buffer.index(b"\r\n\r\n") + 4
        if b" 101 " not in self.buffer[:end].split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the websocket: {bytes(self.buffer[:end])!r}")
        del self.buffer[:end]

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the websocket")
            self.buffer += chunk
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def _message(self) -> dict:
        parts = []
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            n = int.from_bytes(self._read({126: 2, 127: 8}[n]), "big") if n >= 126 else n
            payload = self._read(n)  # frames from the server are not masked
            if first & 0x0F == 8:
                raise ConnectionError("DevTools closed the websocket")
            if first & 0x0F in (0, 1, 2):
                parts.append(payload)
                if first & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method: str, **params: object) -> dict:
        self.calls += 1
        data = json.dumps({"id": self.calls, "method": method, "params": params}).encode()
        n = len(data)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 1 << 16 \
            else bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            message = self._message()
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript: {result['exceptionDetails']}")
        return result["result"].get("value")

    def shot(self, url: str, png: Path, ready: str, act: str = "", settle: float = 3.0, height: int = 0) -> None:
        """Open ``url``, wait until the JS ``ready`` is true, run ``act`` (then ``ready`` again), save a PNG
        (of the top ``height`` pixels when given)."""
        self.call("Page.navigate", url=url)
        wait_for(f"{url}: {ready}", lambda: self.js(f"(() => {{ {DEEP} return {ready}; }})()"), 120)
        if act:
            self.js(f"(() => {{ {DEEP} {act} }})()")
            time.sleep(settle)
            wait_for(f"{url}: {ready}", lambda: self.js(f"(() => {{ {DEEP} return {ready}; }})()"), 60)
        time.sleep(settle)
        png.parent.mkdir(parents=True, exist_ok=True)
        clip = {"clip": {"x": 0, "y": 0, "width": self.size[0], "height": height, "scale": 1}} if height else {}
        png.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", **clip)["data"]))
        print(f"{png}: {url}")


def hparams_view(columns: list[str], metrics: list[str], rows: int, sort_by: str = "hp/accuracy_mean"
                 ) -> tuple[str, str]:
    """(ready, act) for the HParams table: ``columns`` and ``metrics`` shown, best ``sort_by`` first,
    every column as wide as its content."""
    ready = f"deep(document, '#sessionGroupsTable').some(g => (g.items || []).length >= {rows})"
    act = f"""const pane = deep(document, 'tf-hparams-query-pane')[0];
        const show = new Set({json.dumps(columns)}), metrics = new Set({json.dumps(metrics)});
        pane._hparams.forEach((h, i) => pane.set(`_hparams.${{i}}.displayed`, show.has(h.info.name)));
        pane._metrics.forEach((m, i) => pane.set(`_metrics.${{i}}.displayed`, metrics.has(m.info.name.tag)));
        const by = pane._metrics.findIndex(m => m.info.name.tag === {json.dumps(sort_by)});
        pane.set('_sortByIndex', pane._hparams.length + by);
        pane.set('_sortDirection', 1);
        pane._queryServer();
        setTimeout(() => deep(document, '#sessionGroupsTable').forEach(g => {{
            g.querySelectorAll('vaadin-grid-column').forEach(c => {{ c.autoWidth = true; c.flexGrow = 0; }});
            g.recalculateColumnWidths();
        }}), 1500);"""
    return ready, act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", default=str(REPO / "bench" / "sweeps"))
    parser.add_argument("--classical", default=str(REPO / "bench" / "results" / "classical.json"))
    parser.add_argument("--work", default=str(REPO / "lightning_logs" / "tensorboard_screenshot"),
                        help="where the classical rows and the served copies go (not committed)")
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    sweeps, classical = write_summaries(Path(args.sweeps), Path(args.classical), work)
    with TensorBoard(stage(sweeps, work / "served" / "sweeps")) as board, Page((2700, 900)) as page:
        # fold 1: the one fold every sweep and lever ran
        view = hparams_view(SWEEP_COLUMNS, [*METRICS, "hp/fold1_accuracy"], len(sweeps))
        page.shot(f"{board.url}/#hparams", out / "tensorboard_hparams.png", *view)
        page.shot(f"{board.url}/#scalars&_smoothingWeight=0&tagFilter=summary%2Ffold_accuracy",
                  out / "tensorboard_fold_accuracy.png", "deep(document, 'svg').length > 5",
                  "deep(document, 'paper-icon-button').filter(b => b.icon === 'fullscreen')[0].click();", height=690)
    with TensorBoard(stage({"cnn": sweeps["cnn"]}, work / "served" / "cnn")) as board, Page((2600, 1450)) as page:
        page.shot(f"{board.url}/#images", out / "tensorboard_summary_images.png", "deep(document, 'img').length >= 2",
                  "deep(document, 'paper-checkbox').filter(c => c.textContent.includes('actual image size'))"
                  ".forEach(c => c.checked || c.click());")
    rows = len(json.loads(Path(args.classical).read_text())["runs"])
    with TensorBoard(classical) as board, Page((1700, 1500)) as page:
        page.shot(f"{board.url}/#hparams", out / "tensorboard_classical.png",
                  *hparams_view(CLASSICAL_COLUMNS, METRICS, rows))


if __name__ == "__main__":
    main()
