"""The one exception type for bad input: the CLI prints its message as a single line and exits 2."""


class ESC50Error(Exception):
    """Bad or missing input (a file, a CSV, an archive, an option), named in the message."""
