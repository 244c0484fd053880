"""A loaded model over audio files: windows of the training clip length, mean probabilities, top k.

``classify``, ``serve`` and anything else that answers "what is in this file" share this code, so
a file gets the same answer from every door.
"""

from __future__ import annotations

import torch

from esc50_lightning.data.audio import fix_length, load_clip
from esc50_lightning.training.checkpoints import LoadedModel


def windows(wave: torch.Tensor, size: int, overlap: float = 0.5) -> tuple[torch.Tensor, list[int]]:
    """``(n, size)`` windows covering ``wave`` and their start offsets in samples: a file no longer
    than ``size`` is zero-padded to one window; a longer one is cut with ``overlap``, the last
    window ending at the end of the file."""
    if wave.shape[-1] <= size:
        return fix_length(wave, size)[None], [0]
    hop = max(1, int(size * (1 - overlap)))
    starts = list(range(0, wave.shape[-1] - size + 1, hop))
    if starts[-1] + size < wave.shape[-1]:
        starts.append(wave.shape[-1] - size)
    return torch.stack([wave[s : s + size] for s in starts]), starts


def classify_wave(model: LoadedModel, wave: torch.Tensor, overlap: float = 0.5) -> dict:
    """A mono waveform at ``model.sample_rate``: its mean class probabilities over windows, and each
    window's ``(start seconds, probabilities)``."""
    return classify_waves(model, [wave], overlap)[0]


@torch.no_grad()
def classify_waves(model: LoadedModel, waves: list[torch.Tensor], overlap: float = 0.5,
                   max_windows: int | None = None) -> list[dict]:
    """``classify_wave`` of several waveforms at once: the windows of all of them go through the
    model together (``max_windows`` at a time, if given), on the model's device: a server's batch of
    requests costs one forward pass, and each answer is the one ``classify_wave`` gives alone."""
    pieces = [windows(wave, model.clip_samples, overlap) for wave in waves]
    batch = torch.cat([b for b, _ in pieces])
    device = next(model.module.parameters()).device
    step = max_windows or len(batch)
    probs = torch.cat([model.module(batch[i : i + step].to(device)).float().softmax(-1).cpu()
                       for i in range(0, len(batch), step)])
    results, at = [], 0
    for wave, (_, starts) in zip(waves, pieces):
        mine, at = probs[at : at + len(starts)], at + len(starts)
        results.append({"seconds": round(wave.shape[-1] / model.sample_rate, 3), "probabilities": mine.mean(0),
                        "windows": [(s / model.sample_rate, p) for s, p in zip(starts, mine)]})
    return results


def classify_file(model: LoadedModel, path: str, overlap: float = 0.5) -> dict:
    """``classify_wave`` of a file in any format, rate and channel count (one line if unreadable)."""
    return {"file": path, **classify_wave(model, load_clip(path, model.sample_rate), overlap)}


def top(probs: torch.Tensor, names: list[str], k: int) -> list[dict]:
    """The ``k`` most probable classes as ``{"class", "probability"}``, most probable first."""
    values, index = probs.topk(min(k, len(names)))
    return [{"class": names[i], "probability": round(float(v), 4)} for v, i in zip(values, index.tolist())]
