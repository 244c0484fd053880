"""``esc50-lightning``: LightningCLI for fit/validate/test/predict, plus the extra commands.

``esc50-lightning sweep|classical|plots|classify|export|data ...`` go to
``esc50_lightning.commands.<name>.main``; everything else is LightningCLI's (``ESC50CLI``).
"""

from __future__ import annotations

import importlib
import os
import sys

from esc50_lightning.console import configure_console
from esc50_lightning.errors import ESC50Error

EXTRA_COMMANDS = ("sweep", "classical", "plots", "classify", "export", "data")


def main(argv: list[str] | None = None) -> None:
    """Console entry point; bad input ends with one ``error:`` line and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    configure_console()
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            importlib.import_module(f"esc50_lightning.commands.{argv[0]}").main(argv[1:])
        else:
            from esc50_lightning.training import ESC50CLI

            ESC50CLI(args=argv)
    except ESC50Error as err:
        print(f"esc50-lightning: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("esc50-lightning: interrupted", file=sys.stderr)
        sys.exit(130)
