"""``esc50-lightning fold-worker FOLD SWEEP_DIR [--restart] [fit options]`` (hidden): one fold of a
sweep in a process of its own, as ``sweep --jobs N`` and SLURM array tasks run them."""

from __future__ import annotations

from pathlib import Path

from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.fold import run_fold
from esc50_lightning.training.sweep import FoldDir


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit() or int(argv[0]) not in range(1, 6):
        raise ESC50Error("usage: esc50-lightning fold-worker FOLD SWEEP_DIR [--restart] [fit options]")
    restart = "--restart" in argv[2:]
    rest = [arg for arg in argv[2:] if arg != "--restart"]
    run_fold(rest, FoldDir(Path(argv[1]), int(argv[0])), restart)
