"""The pretrained-encoder commands from the command line on the real clips, with random weights of the
published sizes saved in the published formats (the published ones cannot be fetched here):
each command's exit status, wall time and last lines, into ``bench/results/encoders_cli.json``.

    ESC50_ROOT=/path/to/ESC-50 python bench/encoders_cli.py

- ``Cnn14_mAP=0.431.pth``: the reference PANNs Cnn14 (``tests/reference/panns_reference.py``, written
  from the publishers' ``pytorch/models.py``) with random weights, saved as theirs: ``{"model": state_dict}``.
- An AST folder as ``save_pretrained`` writes ``MIT/ast-finetuned-audioset-10-10-0.4593``: ``ASTConfig``'s
  defaults (its architecture) with 1,024 frames and 527 labels, and ``ASTFeatureExtractor``'s defaults.
- Then: ``fit`` of ``configs/panns_cnn14.yaml`` and ``configs/ast.yaml`` for ``--batches`` training batches
  (a check that they run, not a training), the probe config in full (its embeddings cached in one
  pass), ``embed`` of every clip, ``classical --embeddings``, ``classify`` and ``export`` (ONNX and
  TorchScript) of the checkpoints these runs wrote. No accuracy here is a result: the weights are random.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import data_root, write  # noqa: E402

RUN = re.compile(r"lightning_logs/version_\d+/checkpoints/last\.ckpt")


def published_files(folder: Path) -> tuple[Path, Path]:
    from tests.reference.panns_reference import Cnn14, randomise

    cnn14 = folder / "Cnn14_mAP=0.431.pth"
    torch.save({"model": randomise(Cnn14()).state_dict()}, cnn14)
    import transformers

    ast = folder / "ast-finetuned-audioset-10-10-0.4593"
    torch.manual_seed(0)
    transformers.ASTForAudioClassification(transformers.ASTConfig(max_length=1024, num_labels=527)).save_pretrained(ast)
    transformers.ASTFeatureExtractor().save_pretrained(ast)
    return cnn14, ast


def run(record: list, label: str, args: list[str], shown: dict[str, str]) -> str:
    """One command; its output is returned, and its status, time and last lines recorded."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "esc50_lightning", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    # what the command says (stdout); on failure, the one-line error (stderr's last line)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode:
        lines += done.stderr.strip().splitlines()[-1:]
    command = " ".join(["esc50-lightning", *args])
    for path, name in shown.items():
        command = command.replace(path, name)
    tail = lines[-4:]
    for path, name in shown.items():
        tail = [line.replace(path, name) for line in tail]
    record.append({"check": label, "command": command, "rc": done.returncode, "wall_s": round(seconds, 1),
                   "last_lines": tail})
    print(f"{label}: rc {done.returncode}, {seconds:.1f} s\n  " + "\n  ".join(tail), flush=True)
    return out


def exported_agree(onnx_file: Path, script_file: Path, clip: Path) -> dict:
    """ONNX Runtime against the TorchScript export on one real clip at the model's rate."""
    import json

    import onnxruntime

    from esc50_lightning.data.audio import load_clip

    meta = json.loads(onnx_file.with_suffix(".json").read_text())
    wave = load_clip(clip, meta["sample_rate"], meta["input_samples"])[None]
    scripted = torch.jit.load(str(script_file))(wave).detach()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ort = torch.from_numpy(session.run(None, {"waveform": wave.numpy()})[0])
    return {"clip": clip.name, "max_abs_logit_difference": float((ort - scripted).abs().max()),
            "same_top_class": bool(ort.argmax() == scripted.argmax())}


def last_checkpoint(out: str) -> str:
    found = RUN.findall(out)
    if not found:
        raise SystemExit("no run folder in fit's output")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3, help="training batches of each fine-tuning check")
    parser.add_argument("--name", default="encoders_cli")
    args = parser.parse_args()
    root = data_root()
    clips = sorted((root / "audio").glob("*"))[:2]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cnn14, ast = published_files(tmp)
        shown = {str(cnn14): "Cnn14_mAP=0.431.pth", str(ast): "ast-finetuned-audioset-10-10-0.4593",
                 str(tmp): "OUT", str(root): "$ESC50_ROOT"}
        short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(args.batches),
                 "--trainer.limit_val_batches", "2"]
        record: list = []
        out = run(record, "fine-tune Cnn14 (published-format file)",
                  ["fit", "--config", "configs/panns_cnn14.yaml", "--model.net.init_args.weights", str(cnn14), *short],
                  shown)
        finetuned = last_checkpoint(out)
        out = run(record, "probe Cnn14 (configs/panns_cnn14_probe.yaml in full)",
                  ["fit", "--config", "configs/panns_cnn14_probe.yaml", "--model.net.init_args.weights", str(cnn14)],
                  shown)
        probe = last_checkpoint(out)
        run(record, "embed every clip with the probe's encoder",
            ["embed", "--ckpt", probe, "--out", str(tmp / "cnn14.npz")], shown)
        run(record, "classical on the embeddings (logistic regression, five folds)",
            ["classical", "--embeddings", str(tmp / "cnn14.npz"), "--models", "[logreg]",
             "--results", str(tmp / "classical.json")], shown)
        run(record, "classify with the probe", ["classify", "--ckpt", probe, *map(str, clips)], shown)
        run(record, "export the fine-tuned Cnn14 to ONNX",
            ["export", "--ckpt", finetuned, "--format", "onnx", "--out", str(tmp / "cnn14.onnx")], shown)
        run(record, "export the fine-tuned Cnn14 to TorchScript",
            ["export", "--ckpt", finetuned, "--format", "torchscript", "--out", str(tmp / "cnn14.pt")], shown)
        parity = exported_agree(tmp / "cnn14.onnx", tmp / "cnn14.pt", clips[0])
        print(f"Cnn14 ONNX Runtime against TorchScript: {parity}", flush=True)
        out = run(record, "fine-tune AST (save_pretrained folder)",
                  ["fit", "--config", "configs/ast.yaml", "--model.net.init_args.weights", str(ast), *short], shown)
        tuned_ast = last_checkpoint(out)
        run(record, "classify with AST", ["classify", "--ckpt", tuned_ast, *map(str, clips)], shown)
        run(record, "export AST to ONNX",
            ["export", "--ckpt", tuned_ast, "--format", "onnx", "--out", str(tmp / "ast.onnx")], shown)
    path = write(args.name, {"weights": "random, of the published architectures and sizes, in the published formats",
                             "checks": record, "cnn14_onnx_against_torchscript": parity,
                             "all_passed": all(r["rc"] == 0 for r in record)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
