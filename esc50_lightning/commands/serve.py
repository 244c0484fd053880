"""``esc50-lightning serve --ckpt FILE.ckpt [MORE.ckpt ...]``: a trained model behind an HTTP API and a page.

LitServe serves the checkpoints (several: one model, their probabilities averaged, as ``classify
--ckpt A B``) on 127.0.0.1 unless ``--host`` says otherwise. ``POST /predict`` takes a WAV, FLAC or
OGG file (multipart field ``file``, or the raw body) and answers the top classes, and for a file
longer than the training clip each window's with its start time; ``GET /`` is a page to drop,
choose or record a sound; ``GET /health`` and ``GET /info``. Requests are batched (``--max_batch_size``
within ``--batch_timeout`` seconds). Needs the ``serve`` extra: ``pip install -e '.[serve]'``.
"""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser

from esc50_lightning.errors import ESC50Error


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="esc50-lightning serve", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--ckpt", nargs="+", required=True,
                        help="one or more checkpoints written by fit or sweep; several: their mean probabilities")
    parser.add_argument("--host", type=str, default="127.0.0.1", help="127.0.0.1 (this machine), 0.0.0.0 or ::")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_batch_size", type=int, default=16, help="requests per forward pass (1: no batching)")
    parser.add_argument("--batch_timeout", type=float, default=0.01, help="seconds a batch waits to fill")
    parser.add_argument("--workers", type=int, default=1, help="inference processes per device")
    parser.add_argument("--top_k", type=int, default=5, help="classes in each answer")
    parser.add_argument("--max_bytes", type=int, default=10_000_000, help="largest upload accepted (413 beyond)")
    parser.add_argument("--max_seconds", type=float, default=300.0, help="longest audio accepted (413 beyond)")
    parser.add_argument("--overlap", type=float, default=0.5, help="overlap of the windows of long files")
    parser.add_argument("--accelerator", type=str, default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for its answer")
    parser.add_argument("--log_level", type=str, default="warning", help="uvicorn's and LitServe's log level")
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    try:
        from esc50_lightning.serving.api import ClassifierAPI
        from esc50_lightning.serving.server import build_server, check_address, run_server
    except ModuleNotFoundError as err:
        raise ESC50Error(f"serve needs the serve extra ({err.name} is missing): pip install -e '.[serve]'") from None
    from esc50_lightning.training.checkpoints import load_ensemble

    if not 0 <= cfg.overlap < 1:
        raise ESC50Error(f"--overlap must be in [0, 1), got {cfg.overlap}")
    for name in ("max_batch_size", "workers", "top_k", "max_bytes"):
        if cfg[name] < 1:
            raise ESC50Error(f"--{name} must be at least 1, got {cfg[name]}")
    if cfg.batch_timeout < 0 or cfg.max_seconds <= 0:
        raise ESC50Error("--batch_timeout must be >= 0 and --max_seconds > 0")
    host = check_address(cfg.host, cfg.port)
    model = load_ensemble(cfg.ckpt)  # here first: a bad checkpoint is one line, before any worker starts
    api = ClassifierAPI(cfg.ckpt, cfg.top_k, cfg.max_seconds, cfg.overlap, workers=cfg.workers,
                        max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout)
    server = build_server(api, model, cfg.max_bytes, cfg.accelerator, cfg.workers, cfg.timeout)
    shown = f"[{host}]" if ":" in host else host
    print(f"serve: {len(cfg.ckpt)} checkpoint(s), {len(model.class_names)} classes at {model.sample_rate} Hz; "
          f"http://{shown}:{cfg.port}/ (the page), POST /predict, GET /health, GET /info; Ctrl+C stops", flush=True)
    run_server(server, host, cfg.port, cfg.log_level)
    print("serve: stopped")
