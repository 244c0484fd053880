"""The model behind LitServe: one ``ClassifierAPI`` per inference worker.

``decode_request`` decodes each upload on its own (soundfile, mono, resampled: ``data.audio``);
LitServe gathers up to ``max_batch_size`` decoded requests within ``batch_timeout`` and
``predict`` sends the windows of all of them through the model at once (``classify_waves``, the
code ``classify`` runs); ``encode_response`` answers each one. A request that fails to decode is
carried through the batch as a ``Refused`` and answered with its own 4xx: its neighbours in the
batch are answered as if it had not been there.
"""

from __future__ import annotations

import base64
import binascii
import os
import signal

import litserve as ls
import torch

from esc50_lightning.data.audio import declared_seconds, load_clip
from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.pipeline import FrontendSettings
from esc50_lightning.serving.guard import Refused
from esc50_lightning.serving.spectrogram import SpectrogramPainter
from esc50_lightning.training.checkpoints import LoadedModel, load_ensemble
from esc50_lightning.training.inference import classify_waves, top


class ClassifierAPI(ls.LitAPI):
    """Checkpoints (one, or several as one model) behind ``POST /predict``.

    Args:
        ckpts: checkpoint files written by ``fit`` or ``sweep``; loaded in each worker's ``setup``.
        top_k: classes in each answer (overall and per window).
        max_seconds: longest audio accepted, from its header (413 beyond).
        overlap: overlap of the windows a long file is cut into (as ``classify --overlap``).
        max_windows: windows per forward pass, however many requests a batch holds.
        workers: inference workers on this machine (a CPU worker takes its share of the cores).
    """

    def __init__(self, ckpts: list[str], top_k: int = 5, max_seconds: float = 300.0, overlap: float = 0.5,
                 max_windows: int = 256, workers: int = 1, max_batch_size: int = 16,
                 batch_timeout: float = 0.01) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.ckpts, self.top_k, self.max_seconds = list(ckpts), top_k, max_seconds
        self.overlap, self.max_windows, self.workers = overlap, max_windows, workers

    def setup(self, device: str) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the server stops us
        if str(device).startswith("cpu"):
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))
        self.model = load_ensemble(self.ckpts, map_location=device)
        self.model.module.to(device)
        self.painter = SpectrogramPainter(settings_of(self.model))

    # LitServe reads the endpoint's types from these two signatures: ``request`` and the response stay
    # unannotated, so that it parses the JSON body ``UploadGuard`` made and returns our Response as it is
    def decode_request(self, request):
        """``UploadGuard``'s JSON request (a dict) to ``{"wave", "spectrogram"}``, or the ``Refused``."""
        try:
            data = base64.b64decode(request["audio"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            return Refused(400, "malformed request: send the audio as the form field 'file' or the raw body")
        try:
            seconds = declared_seconds(data)
            if seconds > self.max_seconds:
                return Refused(413, f"too long: the audio is {seconds:,.1f} s; this server takes at most "
                                    f"{self.max_seconds:g} s (serve --max_seconds)")
            wave = load_clip(data, self.model.sample_rate)
        except ESC50Error as err:
            return Refused(400, f"not audio: {str(err).removeprefix('upload: ')}")
        return {"wave": wave, "spectrogram": bool(request.get("spectrogram"))}

    def predict(self, x: list | dict) -> list | dict:
        """One forward pass over the windows of every decodable request (a list when batching)."""
        items = x if isinstance(x, list) else [x]
        good = [item for item in items if not isinstance(item, Refused)]
        answers = iter(classify_waves(self.model, [item["wave"] for item in good], self.overlap, self.max_windows)
                       if good else [])
        out = [item if isinstance(item, Refused) else {**item, **next(answers)} for item in items]
        return out if isinstance(x, list) else out[0]

    def encode_response(self, output: dict | Refused):  # a dict, or a JSONResponse for a 4xx
        if isinstance(output, Refused):
            return output.response()
        names = self.model.class_names
        answer = {"seconds": output["seconds"], "top": top(output["probabilities"], names, self.top_k)}
        if len(output["windows"]) > 1:
            answer["windows"] = [{"start": round(start, 3), "top": top(probs, names, self.top_k)}
                                 for start, probs in output["windows"]]
        if output["spectrogram"]:
            answer["spectrogram"] = {**self.painter(output["wave"]), "seconds": output["seconds"]}
        return answer


def settings_of(model: LoadedModel) -> FrontendSettings:
    """The front-end settings of a loaded model (one checkpoint's, or an ensemble's shared ones)."""
    module = model.module
    return module.settings if hasattr(module, "settings") else module.pipeline.settings
