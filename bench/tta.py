"""Test-time shift averaging (``--model.tta_shifts``) on finished sweep folds, without retraining.

Each fold's ``last.ckpt`` (the weights its sweep tested) classifies its validation split and its
test fold with the class probabilities averaged over K evenly spaced circular time shifts, for
each K of ``--shifts``; the shifts of a smaller K that divides a larger one are a subset of its
shifts, so every clip is evaluated at ``max(shifts)`` shifts once. K is chosen on fold 1's
validation split (accuracy, then loss); the test folds only report.

    ESC50_ROOT=/tmp/ESC-50-16k python bench/tta.py lightning_logs/sweeps/cnn_fast/fold{1,2,3,4,5} \\
        --name tta_cnn_fast
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_fold_model, write  # noqa: E402


@torch.no_grad()
def shifted_probabilities(net: torch.nn.Module, x: torch.Tensor, shifts: int) -> torch.Tensor:
    """``(shifts, batch, classes)``: class probabilities of ``x`` rolled by ``k * frames // shifts``
    frames, k = 0 .. shifts - 1 (the shifts ``shift_averaged`` uses)."""
    frames = x.shape[-1]
    return torch.stack([net(torch.roll(x, k * frames // shifts, -1)).float().softmax(-1) for k in range(shifts)])


def evaluate(fold_dir: Path, shifts: list[int], batch: int = 64) -> dict:
    ckpt_path = fold_dir / "checkpoints" / "last.ckpt"
    model, data, epoch = load_fold_model(ckpt_path)
    most = max(shifts)
    out: dict = {"fold_dir": str(fold_dir), "fold": data.fold, "epoch": epoch}
    for part in ("val", "test"):
        index = torch.as_tensor(data.index[part])
        targets = data.targets[index]
        probs = torch.cat([shifted_probabilities(model.net, data.model_inputs(data.inputs[index[i:i + batch]]), most)
                           for i in range(0, len(index), batch)], dim=1)
        for k in shifts:
            mean = probs[:: most // k].mean(0)
            out.setdefault(f"K={k}", {})[part] = {
                "accuracy": (mean.argmax(1) == targets).float().mean().item(),
                "loss": F.nll_loss(mean.clamp_min(1e-12).log(), targets).item(), "clips": len(index)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fold_dirs", nargs="+", type=Path, help="finished sweep folds: <sweep>/fold<K>")
    parser.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--name", default="tta", help="result file: bench/results/<name>.json")
    args = parser.parse_args()
    most = max(args.shifts)
    if any(most % k for k in args.shifts):
        sys.exit(f"every --shifts value must divide the largest ({most})")
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    folds = []
    for fold_dir in args.fold_dirs:
        folds.append(evaluate(fold_dir, args.shifts))
        reported = json.loads((fold_dir / "result.json").read_text())["accuracy"]
        folds[-1]["sweep_test_accuracy"] = reported
        print(json.dumps(folds[-1]))
    chooser = next((f for f in folds if f["fold"] == 1), None)
    chosen = None
    if chooser is not None:
        val = {k: chooser[f"K={k}"]["val"] for k in args.shifts}
        chosen = min(args.shifts, key=lambda k: (-val[k]["accuracy"], val[k]["loss"]))
    summary = {f"K={k}": {part: sum(f[f"K={k}"][part]["accuracy"] for f in folds) / len(folds)
                          for part in ("val", "test")} for k in args.shifts}
    figures = {"shifts": args.shifts, "chosen_on_fold1_validation": chosen, "mean_over_folds": summary,
               "folds": folds, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({"chosen": chosen, "mean_over_folds": summary}, indent=2))
    print(f"wrote {write(args.name, figures)}")


if __name__ == "__main__":
    main()
