"""Training runs: the Trainer (hardware policy), the LightningCLI, one fold, the sweep, executors."""

from esc50_lightning.training.fold import run_fold
from esc50_lightning.training.lightning_cli import ESC50CLI
from esc50_lightning.training.sweep import FoldDir
from esc50_lightning.training.trainer import ESC50Trainer

__all__ = ["ESC50CLI", "ESC50Trainer", "FoldDir", "run_fold"]
