"""Write figures as compact PNGs.

Spectrogram figures are mostly colormap pixels, which compress poorly in RGB. Mapping them onto
a palette of the colormap itself (plus greys for text and axes) keeps every colour of the
colour bar and makes the file 3-5x smaller.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def colormap_palette(cmap: str, greys: int = 40) -> Image.Image:
    colours = matplotlib.colormaps[cmap](np.linspace(0, 1, 256 - greys))[:, :3]
    grey = np.repeat(np.linspace(0, 1, greys)[:, None], 3, axis=1)
    palette = (np.concatenate([colours, grey]) * 255).round().astype(np.uint8)
    image = Image.new("P", (1, 1))
    image.putpalette(palette.flatten().tolist())
    return image


def save_png(fig: Figure, path: str | Path, dpi: int = 90, cmap: str | None = None) -> Path:
    """Save ``fig``; with ``cmap``, as a palette PNG of that colormap's colours."""
    path = Path(path)
    if cmap is None:
        fig.savefig(path, dpi=dpi)
        return path
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    rgb = Image.open(buffer).convert("RGB")
    rgb.quantize(palette=colormap_palette(cmap), dither=Image.Dither.NONE).save(path, optimize=True)
    return path
