"""``esc50-lightning export --ckpt FILE.ckpt --format torchscript|onnx --out FILE``.

The exported model takes a raw waveform ``(batch, samples)`` at the training sample rate
(5 s: ``sample_rate * 5`` samples) and returns ``(batch, 50)`` logits; the spectrogram front end
and the normalisation are inside. Class names and the sample rate go in a ``.json`` next to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from esc50_lightning.errors import ESC50Error
from esc50_lightning.models.waveform import load_checkpoint


def export(ckpt: str, fmt: str, out: str | Path) -> Path:
    model = load_checkpoint(ckpt)
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
    meta = {"format": fmt, "checkpoint": str(ckpt), "sample_rate": model.sample_rate,
            "input_samples": model.clip_samples, "class_names": model.class_names}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="esc50-lightning export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    path = export(args.ckpt, args.format, args.out)
    print(f"export: {path} ({path.stat().st_size // 1024} KB) and {path.with_suffix('.json')}")
