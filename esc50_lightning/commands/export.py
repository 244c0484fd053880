"""``esc50-lightning export --ckpt FILE.ckpt [MORE.ckpt ...] --format torchscript|onnx --out FILE``.

The exported model takes a raw waveform ``(batch, samples)`` at the training sample rate
(5 s: ``sample_rate * 5`` samples) and returns ``(batch, 50)`` logits; the spectrogram front end
and the normalisation are inside. Class names and the sample rate go in a ``.json`` next to it.
Several checkpoints export as one graph: one front end, each member's normaliser and network, and
the log of their mean class probabilities as the logits (their input settings must agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentParser

from esc50_lightning.atomic import write_json_atomic
from esc50_lightning.commands import command_parser
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.checkpoints import load_ensemble


def export(ckpt: str | list[str], fmt: str, out: str | Path) -> Path:
    """Write ``out`` (and its ``.json``) from one checkpoint or several (an ensemble)."""
    model = load_ensemble([ckpt] if isinstance(ckpt, (str, Path)) else ckpt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, model.clip_samples)
    module = model.module.float().eval()
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(module, example)
        traced.save(str(out))
    else:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ESC50Error("ONNX export needs the onnx extra: pip install 'esc50-lightning[onnx]'") from None
        module.export_friendly()
        torch.onnx.export(module, (example,), str(out), input_names=["waveform"], output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    checkpoint = str(ckpt) if isinstance(ckpt, (str, Path)) else [str(c) for c in ckpt]
    meta = {"format": fmt, "checkpoint": checkpoint, "sample_rate": model.sample_rate,
            "input_samples": model.clip_samples, "class_names": model.class_names}
    write_json_atomic(metadata_path(out), meta)
    return out


def metadata_path(out: Path) -> Path:
    """Where the class names and sample rate go: beside the model, never over it."""
    return out.with_suffix(".json") if out.suffix != ".json" else out.with_name(out.name + ".meta.json")


def build_parser() -> ArgumentParser:
    parser = command_parser("export", __doc__)
    parser.add_argument("--ckpt", required=True, nargs="+", action="extend",
                        help="one or more checkpoints written by fit or sweep; several: one graph, their mean")
    parser.add_argument("--format", type=Literal["torchscript", "onnx"], default="torchscript")
    parser.add_argument("--out", type=str, required=True, help="the model file to write (and a .json beside it)")
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    path = export(args.ckpt[0] if len(args.ckpt) == 1 else args.ckpt, args.format, args.out)
    print(f"export: {path} ({path.stat().st_size // 1024} KB) and {metadata_path(path)}")
