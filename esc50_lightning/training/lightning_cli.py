"""``ESC50CLI``: LightningCLI over ``AudioClassifier`` + ``ESC50DataModule`` on ``ESC50Trainer``."""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from esc50_lightning.console import configure_console
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.models import AudioClassifier
from esc50_lightning.training.trainer import ESC50Trainer


class SaveConfigToRun(SaveConfigCallback):
    """Save ``config.yaml`` into the run's log folder, and only there.

    With ``--trainer.logger false`` there is no run folder and Lightning would write the file
    into the working directory instead; then nothing is saved.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.logger is None:
            return
        super().setup(trainer, pl_module, stage)


class ESC50CLI(LightningCLI):
    """LightningCLI with the DataModule's shapes linked into the model."""

    def __init__(self, *args, **kwargs) -> None:
        configure_console()
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("trainer_defaults", {
            "callbacks": [LearningRateMonitor("epoch"), ModelCheckpoint(save_last=True)],
        })
        kwargs.setdefault("save_config_callback", SaveConfigToRun)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_class", ESC50Trainer)
        super().__init__(AudioClassifier, ESC50DataModule, *args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        self.raw_args = sys.argv[1:] if args is None else list(args) if isinstance(args, (list, tuple)) else []
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path FILE`` builds the model from the checkpoint's hyper-parameters (Lightning's
        rule, so the network matches its weights), except those named on the command line as
        ``--model.NAME``: ``test --ckpt_path F --model.tta_shifts 8`` tests with 8 shifts, where
        Lightning alone would silently keep the checkpoint's 1 (Lightning-AI/pytorch-lightning#21455)."""
        named = {arg.removeprefix("--model.").split("=")[0] for arg in self.raw_args if arg.startswith("--model.")}
        model = self.config[self.config.subcommand].model if self.config.get("subcommand") else {}
        given = {name: model[name] for name in named if "." not in name and name in model}
        super()._parse_ckpt_path()
        for name, value in given.items():
            self.config[self.config.subcommand].model[name] = value

    def instantiate_classes(self) -> None:
        """A class that rejects its arguments (``ValueError``/``TypeError`` from its constructor:
        a callback's decay, a network's dropout) ends in one line with its own message, rather
        than jsonargparse's report on every type the value failed to match."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            while err.__cause__ is not None:
                err = err.__cause__
            raise ESC50Error(f"invalid configuration: {str(err).splitlines()[0]}") from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.feature_shape", "model.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def before_fit(self) -> None:
        """``--ckpt_path last``: resume the newest run's ``last.ckpt`` and keep logging into its folder.

        (Lightning alone looks for ``last`` in the new run's own, empty, version folder.)
        """
        config = self.config[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        logger = self.trainer.logger
        if not isinstance(logger, TensorBoardLogger):
            return
        runs = sorted(Path(logger.root_dir).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise ESC50Error(f"--ckpt_path last: no */checkpoints/last.ckpt under {logger.root_dir} to resume")
        config["ckpt_path"] = str(runs[-1])
        logger._version = runs[-1].parent.parent.name
        print(f"resuming {runs[-1]}")
