"""``esc50-lightning classify --ckpt FILE.ckpt [MORE.ckpt ...] AUDIO...``: class probabilities for any audio file.

Several checkpoints classify as one model: their class probabilities averaged (one front end,
each member's own normaliser; their input settings must agree). After the first checkpoint, only
names ending in ``.ckpt`` are read as checkpoints, so ``--ckpt A.ckpt B.ckpt x.wav`` is two
checkpoints and one audio file; checkpoints named otherwise go before ``--`` (``--ckpt A B -- x.wav``).

Any format soundfile reads, any rate (resampled), any channel count (mixed to mono), any length:
shorter files are zero-padded to the training clip length, longer ones are cut into windows of
that length with 50% overlap (the last window ends at the end of the file) whose probabilities
are averaged.
"""

from __future__ import annotations

import argparse
import json
import sys

from jsonargparse import ArgumentParser

from esc50_lightning.commands import command_parser
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.checkpoints import load_ensemble
from esc50_lightning.training.inference import classify_file, top


def checkpoints_and_audio(ckpts: list[str], audio: list[str], separated: bool) -> tuple[list[str], list[str]]:
    """``--ckpt`` takes every name up to the next option: past the first, those not ending in
    ``.ckpt`` are audio files (``--ckpt A.ckpt x.wav``), unless ``--`` set the audio apart."""
    if separated:
        return ckpts, audio
    extra = [name for name in ckpts[1:] if not name.endswith(".ckpt")]
    return [ckpts[0], *(name for name in ckpts[1:] if name.endswith(".ckpt"))], [*audio, *extra]


def build_parser() -> ArgumentParser:
    parser = command_parser("classify", __doc__)
    # SUPPRESS: absent from the command line, a config file's audio stays
    parser.add_argument("audio", nargs="*", default=argparse.SUPPRESS, help="audio files (WAV, FLAC, OGG, ...)")
    parser.add_argument("--ckpt", required=True, nargs="+", action="extend",
                        help="one or more checkpoints written by fit or sweep; several: their mean probabilities")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per file")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--windows", action="store_true", help="also show each window's top class")
    parser.add_argument("--overlap", type=float, default=0.5, help="overlap of windows in long files")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report unreadable files and carry on (exit status 1 if any)")
    return parser


def main(argv: list[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.ckpt, args.audio = checkpoints_and_audio(args.ckpt, list(getattr(args, "audio", None) or []), "--" in argv)
    if not args.audio:
        parser.error("the following arguments are required: audio")
    if not 0 <= args.overlap < 1:
        raise ESC50Error(f"--overlap must be in [0, 1), got {args.overlap}")
    model = load_ensemble(args.ckpt)
    results, bad = [], []
    for path in args.audio:
        try:
            r = classify_file(model, path, args.overlap)
        except ESC50Error as err:
            if not args.skip_bad:
                raise
            bad.append({"file": path, "error": str(err)})
            print(f"esc50-lightning: skipped: {err}", file=sys.stderr)
            continue
        entry = {"file": path, "seconds": r["seconds"], "top": top(r["probabilities"], model.class_names, args.top_k)}
        if args.windows:
            entry["windows"] = [{"start": round(s, 3), **top(p, model.class_names, 1)[0]} for s, p in r["windows"]]
        results.append(entry)
        if not args.json:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in entry["top"])
            print(f"{path} ({r['seconds']:.2f} s): {best}")
            for w in entry.get("windows", []):
                print(f"    {w['start']:7.2f} s  {w['class']} {w['probability']:.3f}")
    if args.json:
        checkpoint = args.ckpt[0] if len(args.ckpt) == 1 else args.ckpt
        print(json.dumps({"checkpoint": checkpoint, "results": results, "errors": bad}, indent=2))
    if bad:
        sys.exit(1)
