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
)
NOISY_LOG_PREFIXES = ("💡 Tip:",)  # Lightning's cloud-service advertisements


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISY_LOG_PREFIXES)


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
