"""``ClassifierAPI`` on a LitServer: the page at ``/``, ``POST /predict`` behind ``UploadGuard``,
``GET /health`` and ``GET /info`` (LitServe's own: workers ready; the model's classes, sample rate,
checkpoints and limits under ``"model"``), every error as ``{"error": one line}``.

LitServe spawns the inference workers (``workers`` per device) and forks the HTTP servers; the page
is three files of package data read once at start, served from a fixed table (a request names a
route, never a file).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from contextlib import contextmanager
from importlib import resources

import litserve as ls
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from esc50_lightning.errors import ESC50Error
from esc50_lightning.serving.api import ClassifierAPI, settings_of
from esc50_lightning.serving.guard import FORMATS, UploadGuard
from esc50_lightning.training.checkpoints import LoadedModel, read_checkpoint

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServe binds: this machine only, or every interface
PAGE = {"/": ("index.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript; charset=utf-8"),
        "/page.css": ("page.css", "text/css; charset=utf-8")}


def public(settings: dict) -> dict:
    """JSON-safe settings without Lightning's private keys."""
    return json.loads(json.dumps({k: v for k, v in settings.items() if not k.startswith("_")}, default=str))


def model_info(api: ClassifierAPI, model: LoadedModel, max_bytes: int) -> dict:
    """What ``GET /info`` says of the model under ``"model"``."""
    checkpoints = []
    for path in api.ckpts:
        ckpt = read_checkpoint(path)
        checkpoints.append({"path": str(path), "data": public(ckpt["datamodule_hyper_parameters"]),
                            "model": public(ckpt["hyper_parameters"])})
    return {"classes": model.class_names, "sample_rate": model.sample_rate,
            "clip_seconds": model.clip_samples / model.sample_rate, "front_end": settings_of(model).as_dict(),
            "checkpoints": checkpoints, "top_k": api.top_k, "overlap": api.overlap, "formats": list(FORMATS),
            "max_bytes": max_bytes, "max_seconds": api.max_seconds,
            "batching": {"max_batch_size": api.max_batch_size, "batch_timeout": api.batch_timeout}}


def static(content: bytes, media_type: str) -> Callable:
    async def endpoint() -> Response:
        return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return endpoint


async def one_line(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def build_server(api: ClassifierAPI, model: LoadedModel, max_bytes: int = 10_000_000, accelerator: str = "auto",
                 workers: int = 1, timeout: float = 30.0) -> ls.LitServer:
    """The LitServer for ``api`` (not started: ``run_server``)."""
    try:
        server = ls.LitServer(api, accelerator=accelerator, workers_per_device=workers, timeout=timeout,
                              model_metadata=model_info(api, model, max_bytes), disable_openapi_url=True,
                              middlewares=[(UploadGuard, {"path": api.api_path, "max_bytes": max_bytes})])
    except (ValueError, RuntimeError) as err:  # LitServe's word on an accelerator, a timeout ...
        raise ESC50Error(f"serve: {str(err).splitlines()[0]}") from None
    if not server.devices:
        raise ESC50Error(f"--accelerator {accelerator}: no such device on this machine")
    app = server.app
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/"]  # LitServe's "/"
    files = resources.files("esc50_lightning.serving") / "static"
    for route, (name, media_type) in PAGE.items():
        app.add_api_route(route, static((files / name).read_bytes(), media_type), methods=["GET"],
                          include_in_schema=False)
    app.add_exception_handler(HTTPException, one_line)
    return server


def check_address(host: str, port: int) -> str:
    """``host`` as LitServe takes it, and the port free: else one line."""
    host = "127.0.0.1" if host == "localhost" else host
    if host not in HOSTS:
        raise ESC50Error(f"--host {host!r}: LitServe binds 127.0.0.1 (this machine only), 0.0.0.0 or :: "
                         "(every interface)")
    if not 1024 <= port <= 65535:
        raise ESC50Error(f"--port {port}: choose one from 1024 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: closed connections don't count
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ESC50Error(f"{host}:{port} is taken ({err.strerror}): choose another --port") from None
    return host


@contextmanager
def sigterm_stops_gracefully():
    """SIGTERM in this process as Ctrl+C: LitServe then stops its workers and servers before it
    returns (its children keep their own handling)."""
    main_pid = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked child that kept this handler: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_server(server: ls.LitServer, host: str, port: int, log_level: str = "warning") -> None:
    """Serve until Ctrl+C or SIGTERM; LitServe shuts its processes down on the way out."""
    with sigterm_stops_gracefully():
        server.run(host=host, port=port, generate_client_file=False, log_level=log_level)
