"""The extra commands of ``esc50-lightning``, one module each with a ``main(argv)``."""

from __future__ import annotations

import argparse

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter


class DocstringHelp(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help, with a command's docstring shown as written (its paragraphs kept)."""


def command_parser(name: str, description: str | None) -> ArgumentParser:
    """A command's jsonargparse parser, as ``classical`` and LightningCLI have theirs: the same
    ``--help``, ``--config`` files (``--print_config`` writes one) and error lines."""
    parser = ArgumentParser(prog=f"esc50-lightning {name}", description=description, formatter_class=DocstringHelp)
    parser.add_argument("--config", action=ActionConfigFile)
    return parser
