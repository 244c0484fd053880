"""``esc50-lightning``: one entry point for the whole study; ``--help`` lists every command.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's (``ESC50CLI``); the others go
to ``esc50_lightning.commands.<module>.main``. Bad input ends with one ``error:`` line and exit
status 2, whichever command it reached.
"""

from __future__ import annotations

import importlib
import os
import sys

from esc50_lightning.allocator import keep_freed_memory
from esc50_lightning.console import configure_console
from esc50_lightning.errors import ESC50Error

LIGHTNING = ("fit", "validate", "test", "predict")
# the study's order: command -> (module under commands/, or None for LightningCLI; one line of help)
COMMANDS = {
    "data": ("dataset", "download (or install from a local archive), verify and describe ESC-50"),
    "plots": ("plots", "waveforms, spectrogram representations, pooling, curves, confusion, budget"),
    "classical": ("classical", "pooled features + SVM / logistic regression / random forest, 5-fold CV"),
    "fit": (None, "train a network on one fold (--data.fold K) or on every clip (--data.fold all)"),
    "validate": (None, "evaluate a checkpoint on its fold's validation split"),
    "test": (None, "evaluate a checkpoint on the fold it held out"),
    "predict": (None, "a CSV of a fold's clips: target, predicted class, top 5 with probabilities"),
    "sweep": ("sweep", "fit + test on each of the 5 folds, resumable, aggregated into one table"),
    "tune": ("tune", "search hyper-parameters (Optuna) on the folds' validation splits, never a test fold"),
    "ensemble": ("ensemble", "average several sweeps' fold models, fold by fold, into one result"),
    "classify": ("classify", "class probabilities of your own audio files, from one or more checkpoints"),
    "export": ("export", "one or more checkpoints as a TorchScript or ONNX waveform-in model"),
    "embed": ("embed", "a pretrained encoder's embedding of every clip (or of your files), for numpy or pandas"),
    "serve": ("serve", "a trained model behind an HTTP API and a web page (LitServe; the serve extra)"),
}
HIDDEN = {"fold-worker": "fold_worker"}  # one fold in a process of its own (sweep --jobs, SLURM arrays)


def usage() -> str:
    lines = ["usage: esc50-lightning COMMAND [options]   (esc50-lightning COMMAND --help for its options)", "",
             "commands, in the order of the study:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def run(argv: list[str]) -> None:
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(usage())
        return
    module = HIDDEN.get(command) or COMMANDS.get(command, (None,))[0]
    if module is not None:
        importlib.import_module(f"esc50_lightning.commands.{module}").main(argv[1:])
    elif command in LIGHTNING or command.startswith("-"):  # LightningCLI's own options (--print_config ...)
        from esc50_lightning.training import ESC50CLI

        ESC50CLI(args=argv)
    else:
        raise ESC50Error(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point; bad input ends with one ``error:`` line and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    configure_console()
    keep_freed_memory()  # every command that runs a network reuses its heap, not only fit's Trainer (allocator.py)
    try:
        run(argv)
    except ESC50Error as err:
        print(f"esc50-lightning: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("esc50-lightning: interrupted", file=sys.stderr)
        sys.exit(130)
