"""Matplotlib figures (Agg backend) shared by the training loop and the ``plots`` command.

``confusion`` depends on nothing of ours (models import it); ``audio`` uses ``features``.
"""

from esc50_lightning.figures.confusion import confusion_figure, most_confused, per_class_figure
from esc50_lightning.figures.save import save_png

__all__ = ["confusion_figure", "most_confused", "per_class_figure", "save_png"]
# figures.audio needs esc50_lightning.features and figures.curves needs tensorboard: import them
# from their modules, so the training loop pulls in only what it uses.
