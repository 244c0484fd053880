"""esc50-lightning: environmental sound classification on ESC-50 with PyTorch Lightning."""

__version__ = "0.1.0"
