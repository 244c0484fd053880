"""Side effects of a run that the LightningModule should not carry: figures in TensorBoard."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class ConfusionFigure(Callback):
    """After testing, draw the test confusion matrix (summed over DDP ranks, read from the
    classifier's ``confusion``) into the run's TensorBoard as ``test/confusion_matrix``."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        confusion = getattr(pl_module, "confusion", None)
        logger = trainer.logger
        if confusion is None or not trainer.is_global_zero or logger is None \
                or not hasattr(logger.experiment, "add_figure"):
            return
        from esc50_lightning.figures import confusion_figure

        names = getattr(trainer.datamodule, "class_names", None) or [str(i) for i in range(confusion.shape[0])]
        logger.experiment.add_figure("test/confusion_matrix", confusion_figure(confusion.numpy(), names),
                                     pl_module.global_step)
