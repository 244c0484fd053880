"""Matplotlib figures (Agg backend) shared by the training loop and the ``plots`` command.

Depends on nothing else of ours, so models may import it.
"""

from esc50_lightning.figures.confusion import confusion_figure, most_confused

__all__ = ["confusion_figure", "most_confused"]
