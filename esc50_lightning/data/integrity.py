"""Does a file hold the audio its header declares?

libsndfile quietly decodes what is there: a WAV whose header declares 160,000 data bytes but
whose file holds 16 reads as 8 samples, and a truncated clip would be classified as silence.
For the container formats that declare their data length up front (RIFF WAVE, AIFF), the
declared length is compared with the bytes actually present.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the length open


def _data_chunk(f: BinaryIO, endian: str, data_id: bytes, file_size: int) -> tuple[int, int] | None:
    """``(declared, actual)`` byte counts of the data chunk, or ``None`` if it is not found.
    Walks the chunk headers from the current position, seeking over their bodies."""
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        chunk_id, size = header[:4], struct.unpack(f"{endian}I", header[4:])[0]
        body = f.tell()
        if chunk_id == data_id:
            if data_id == b"SSND":  # AIFF: offset and block size precede the samples
                body, size = body + 8, size - 8
            return size, max(0, file_size - body)
        f.seek(body + size + (size & 1))  # chunks are padded to an even length


def declared_length_problem(path: str | Path | BinaryIO) -> str | None:
    """A one-line description of a header/content mismatch, or ``None`` when the file is whole
    (or its format does not declare a length). Reads a few bytes of headers, never the audio.
    ``path`` may also be a seekable binary file (an upload in memory), read from its start."""
    if not isinstance(path, (str, Path)):
        file_size = path.seek(0, 2)
        path.seek(0)
        found = _declared_and_actual(path, file_size)
        path.seek(0)
    else:
        with open(path, "rb") as f:
            found = _declared_and_actual(f, Path(path).stat().st_size)
    if found is None:
        return None
    declared, actual = found
    if declared in UNKNOWN_SIZES or declared <= actual:
        return None
    return f"truncated: the header declares {declared:,} bytes of audio, the file holds {actual:,}"


def _declared_and_actual(f: BinaryIO, file_size: int) -> tuple[int, int] | None:
    magic = f.read(12)
    if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
        return _data_chunk(f, "<", b"data", file_size)
    if magic[:4] == b"FORM" and magic[8:12] in (b"AIFF", b"AIFC"):
        return _data_chunk(f, ">", b"SSND", file_size)
    return None
