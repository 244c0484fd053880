"""``ESC50CLI``: LightningCLI over ``AudioClassifier`` + ``ESC50DataModule`` on ``ESC50Trainer``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from jsonargparse import ActionYesNo
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from esc50_lightning.console import configure_console
from esc50_lightning.data import ESC50DataModule
from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import AUTO, BF16_ON_CPU_ATTRIBUTE, detect, resolve_precision
from esc50_lightning.models import AudioClassifier
from esc50_lightning.models.distill import INPUT_KEYS, SPLIT_KEYS
from esc50_lightning.training.checkpoints import data_settings, read_checkpoint
from esc50_lightning.training.predictions import PredictionCSV
from esc50_lightning.training.recipe import resolved_changes, setting_differences
from esc50_lightning.training.report import fit_report, scored_clips
from esc50_lightning.training.settings import checkpoint_ran_with, pin_hint, ran_with, resolution, resolution_here
from esc50_lightning.training.trainer import ESC50Trainer

EVALUATE = ("validate", "test", "predict")  # subcommands that read a checkpoint's held-out clips
HOW_LONG = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")  # a resumed fit may train on longer


def checkpoint_network(args: list[str]) -> dict | None:
    """``validate``/``test``/``predict --ckpt_path F`` with no ``--config`` and no ``--model.net``:
    F's network, so that the parser's required ``model.net`` is met and no config file is needed
    (the rest of the model's and the data's settings come from F as with a config)."""
    if not args or args[0] not in EVALUATE or any(a.startswith(("--config", "--model.net")) for a in args):
        return None
    for i, arg in enumerate(args):
        path = arg.split("=", 1)[1] if arg.startswith("--ckpt_path=") else \
            args[i + 1] if arg == "--ckpt_path" and i + 1 < len(args) else None
        if path and path != "last":
            return read_checkpoint(path)["hyper_parameters"]["net"]
    return None


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
        kwargs.setdefault("save_config_callback", SaveConfigToRun)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_class", ESC50Trainer)
        super().__init__(AudioClassifier, ESC50DataModule, *args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        self.raw_args = sys.argv[1:] if args is None else list(args) if isinstance(args, (list, tuple)) else []
        if network := checkpoint_network(self.raw_args):
            args = [*self.raw_args, f"--model.net={json.dumps(network)}"]
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
        if self.config.get("subcommand") in EVALUATE:
            self._check_held_out_fold()

    def _check_held_out_fold(self) -> None:
        """``validate``/``test``/``predict --ckpt_path F`` evaluate on the clips F held out: its
        test fold, validation split and input settings are the defaults (``--data.NAME`` on the
        command line still wins, like ``--model.NAME``); a fold or split F trained on is refused in
        one line unless ``--allow_trained_fold``, and so is testing with no fold held out (``all``)."""
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        named = {arg.removeprefix("--data.").split("=")[0] for arg in self.raw_args if arg.startswith("--data.")}
        trained = data_settings(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else {}
        for key in (*SPLIT_KEYS, *INPUT_KEYS):
            if key in trained and key not in named:
                config.data[key] = trained[key]
        fold = config.data.get("fold")
        compared = SPLIT_KEYS if subcommand == "validate" else ("fold",)
        changed = [key for key in compared if key in trained and config.data.get(key) != trained[key]]
        if changed and not config.get("allow_trained_fold"):
            key = changed[0]
            what = (f"its validation split has data.{key}={trained[key]!r}" if key != "fold" else
                    "it was trained on every clip (data.fold all)" if trained[key] == "all" else
                    f"its test fold is {trained[key]}")
            raise ESC50Error(f"{ckpt_path}: {what}, so --data.{key} {config.data.get(key)} would {subcommand} it on "
                             f"clips it trained on; leave --data.{key} out to use the checkpoint's, or add "
                             "--allow_trained_fold if you mean it")
        if fold == "all" and subcommand != "validate":
            source = f"{ckpt_path} was trained on every clip (data.fold all)" if trained.get("fold") == "all" \
                else "--data.fold all holds no fold out"
            raise ESC50Error(f"{source}: there is no unseen fold to {subcommand} on")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in EVALUATE:
            parser.add_argument("--allow_trained_fold", action=ActionYesNo(no_prefix=None), default=False,
                                help="with --ckpt_path: evaluate on a --data.fold (or validation split) the "
                                     "checkpoint trained on, which is refused otherwise")
        if subcommand == "predict":
            parser.add_argument("--predictions", type=str | None, default=None,
                                help="the CSV to write (file, fold, target, predicted, top 5 with probabilities); "
                                     "default: predictions.csv in the run folder")
        return parser

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

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """``precision: auto`` resolved with the network known (the hook where the model exists):
        a network whose class says bf16 does not pay it on a CPU (``bf16_pays_on_cpu = False``,
        the MLP) trains in fp32 there; on a GPU, or for any other network, the device decides
        alone, as ``ESC50Trainer`` does without the CLI."""
        config = self._get(self.config_init, "trainer", default={})
        net = getattr(self.model, "net", None)
        if "precision" not in kwargs and config.get("precision", AUTO) in (None, AUTO) and \
                not getattr(net, BF16_ON_CPU_ATTRIBUTE, True):
            accelerator = config.get("accelerator", AUTO)
            kwargs["precision"] = resolve_precision(AUTO, detect(accelerator if isinstance(accelerator, str) else AUTO),
                                                    announce=rank_zero_only.rank == 0, network=net)
        return super().instantiate_trainer(**kwargs)

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
        self._check_resumed_settings(runs[-1])
        config["ckpt_path"] = str(runs[-1])
        logger._version = runs[-1].parent.parent.name
        print(f"resuming {runs[-1]}")

    def _check_resumed_settings(self, last: Path) -> None:
        """The run ``--ckpt_path last`` resumes goes on only with the settings it was trained with,
        as ``sweep`` resumes a fold (``training.recipe.setting_differences``; ``auto`` ones as they
        resolved, from its checkpoint's record): otherwise one line names each setting. How long it
        trains (``HOW_LONG``) may change: ``--trainer.max_epochs N`` trains it on to epoch N."""
        try:
            recorded = yaml.safe_load((last.parent.parent / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return  # no record of its settings (trained with --trainer.logger false?): nothing to compare
        parser = self._parser(self.subcommand)
        requested = json.loads(parser.dump(self.config[self.subcommand], format="json", skip_link_targets=False))
        trained_ran = resolution(recorded, {"resolved": checkpoint_ran_with(last)})
        ran = resolution_here(requested, ran_with(self.trainer, self.model))
        changed = [change for change in setting_differences(recorded, requested, trained_ran, ran)
                   if change.split(" ", 1)[0] not in HOW_LONG]
        if changed:
            pin = resolved_changes(trained_ran, ran)
            pin = f", or pin {pin_hint(pin, trained_ran)} to go on as it ran" if pin else ""
            raise ESC50Error(f"--ckpt_path last: {last} was trained with other settings ({'; '.join(changed)}); "
                             f"leave out --ckpt_path to train a new run with them{pin}")

    def after_fit(self) -> None:
        """End on what the run reached: the final metrics as one small table (``training.report``),
        the run folder and the command that tests it; and why a model trained on every clip has no
        test score (``test`` on it is refused)."""
        if not self.trainer.is_global_zero:
            return
        fold = self.datamodule.hparams.get("fold")
        index = getattr(self.datamodule, "index", {})
        clips = {part: len(index[part]) for part in ("val", "test") if part in index}
        batches = sum(int(n) for n in self.trainer.num_val_batches if n != float("inf"))
        size = getattr(self.trainer.val_dataloaders, "batch_size", None) or 0
        clips = scored_clips(clips, batches, size, self.trainer.world_size)
        print(fit_report(self.trainer, fold, clips))
        if fold == "all":
            print("fold all: every clip trained on; no fold held out, so no test")

    def before_predict(self) -> None:
        """Write what ``predict`` computes to a CSV (``training.predictions.PredictionCSV``)."""
        self.prediction_writer = PredictionCSV(self.config[self.subcommand].get("predictions"))
        self.trainer.callbacks.append(self.prediction_writer)

    def after_predict(self) -> None:
        if self.trainer.is_global_zero and self.prediction_writer.summary:
            print(self.prediction_writer.summary)
