"""The clip's log-mel spectrogram as a PNG for the page: the model's own front-end settings
(its FFT, hop and bins), drawn as log-mel whatever the model reads, low frequencies at the bottom."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from esc50_lightning.features.pipeline import FrontendSettings
from esc50_lightning.features.spectrogram import SpectrogramFrontend

MAX_COLUMNS = 1200  # a long file is squeezed to this many frames: the page shows it whole


class SpectrogramPainter:
    """Log-mel with the model's resolution (a ``linear`` or ``log_freq`` model's bins drawn as mel
    bins), coloured with matplotlib's ``magma``."""

    def __init__(self, settings: FrontendSettings) -> None:
        self.frontend = SpectrogramFrontend("log_mel", settings.sample_rate, settings.n_fft, settings.win_length,
                                            settings.hop_length, settings.n_mels, settings.f_min, settings.f_max,
                                            80.0)
        self.f_min, self.f_max = settings.f_min, settings.f_max or settings.sample_rate / 2
        from matplotlib import colormaps

        self.lut = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> dict:
        """``{"image": PNG data URL, "bins", "f_min", "f_max"}`` of a mono waveform at the model's rate."""
        db = self.frontend(wave[None].float())[0]  # (bins, frames), floored 80 dB below the clip's peak
        low, high = float(db.min()), float(db.max())
        scaled = ((db - low) / max(high - low, 1e-6) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        image = Image.fromarray(np.ascontiguousarray(self.lut[scaled[::-1]]))
        if image.width > MAX_COLUMNS:
            image = image.resize((MAX_COLUMNS, image.height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
                "bins": int(db.shape[0]), "f_min": self.f_min, "f_max": self.f_max}
