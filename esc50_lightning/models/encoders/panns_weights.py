"""Reading a published PANNs checkpoint (a ``torch.save`` of ``{"model": state_dict, ...}``, Zenodo
record 3987831) and checking it: one ``ESC50Error`` line for a file that is missing, truncated, not a
torch file or holds no state dict. Whether the state dict is the right model's: ``base.load_matching``.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from esc50_lightning.errors import ESC50Error
from esc50_lightning.models.encoders.base import error_detail


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_published(path: Path, expected: str, md5: str | None) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read with ``weights_only``; a file that also pickles other objects
    (a training run's sampler state) is read in full only when it is the published file byte for byte
    (``md5``). ``expected`` (what the file should be) ends every error line."""
    try:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # objects besides tensors (a training run's sampler state)?
            if "Unsupported global" not in str(err) and "safe_globals" not in str(err):
                raise  # not a pickle at all: below
            if not md5 or file_md5(path) != md5:
                raise ESC50Error(f"{path}: holds pickled objects besides tensors and is not the published "
                                 f"file (its md5 differs); expected {expected}") from None
            saved = torch.load(path, map_location="cpu", weights_only=False)  # the publisher's, byte for byte
    except ESC50Error:
        raise
    except FileNotFoundError:
        raise ESC50Error(f"{path}: weights file not found") from None
    except Exception as err:  # noqa: BLE001 - truncated, not a torch file, pickled code: one line
        raise ESC50Error(f"{path}: not a readable torch checkpoint ({type(err).__name__}: "
                         f"{error_detail(err, 120)}); expected {expected}; "
                         "a download cut short? delete the file and fetch it again") from None
    state = saved.get("model", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ESC50Error(f"{path}: no state dict inside (a dict with a 'model' entry of tensors); "
                         f"expected {expected}")
    return state
