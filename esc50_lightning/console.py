"""What a user sees on the console: our own log lines, and none of the libraries' noise.

Lightning, jsonargparse and torch print advertisements, deprecation notices about their own
internals and warnings about how *we* call them; none of that helps a user. They are silenced
here, by message, and nothing else is.
"""

from __future__ import annotations

import logging
import sys
import warnings

NOISE = (
    r".*LightningCLI's args parameter is intended to run from within Python.*",  # we pass argv on purpose
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # torch pytree notice, raised inside Lightning
    r".*is not supported by the model summary.*",  # the summary's size estimate under mixed precision
    r".*Total length of .* across ranks is zero.*",  # val_strategy none: no validation batches, as asked
    r".*WeightAveraging doesn't support sharding model layers.*",  # our configure_model compiles, never shards
    r"Checkpoint directory .* exists and is not empty",  # ModelCheckpoint, on every resume: we resume on purpose
    # evaluating a checkpoint: its Timer state and its old checkpoint folder do not matter to a test
    r".*callbacks used to create the checkpoint need to be provided during `Trainer` instantiation.*",
    r"The dirpath has changed from .* therefore `best_model_score`.*",
    r"Constant folding - Only steps=1 can be constant folded.*",  # ONNX export of the front end's frame slicing
)
NOISY_LOG_PREFIXES = ("💡 Tip:",)  # Lightning's cloud-service advertisements
# Log lines that other libraries' own loggers emit (logger name -> message prefixes): inductor imports
# torch.utils.cpp_extension, which says this on every compiled CPU run where a CUDA toolkit is installed.
NOISY_LOGGERS = {"torch.utils.cpp_extension": ("No CUDA runtime is found",)}


class DropNoise(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...] = NOISY_LOG_PREFIXES) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def configure_console() -> None:
    """Route ``esc50_lightning`` log lines to stderr and drop the libraries' noise (idempotent)."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    ours = logging.getLogger("esc50_lightning")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, DropNoise) for f in handler.filters):
                handler.addFilter(DropNoise())
    for name, prefixes in NOISY_LOGGERS.items():  # on the logger itself: before any handler, torch's or ours
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise(prefixes))
