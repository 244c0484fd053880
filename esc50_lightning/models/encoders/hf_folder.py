"""Hugging Face model folders: where a model's files are (a local folder as ``save_pretrained``
writes it, or a Hub snapshot fetched once into ``~/.cache/esc50-lightning/weights/huggingface/``
with Hugging Face's resumable download, under a lock; offline, one line names what to fetch by hand),
reading their configuration and feature extractor, and loading the weights with every tensor of the
base model checked. Each failure is one ``ESC50Error`` line.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.fetch import weights_dir
from esc50_lightning.locks import file_lock
from esc50_lightning.models.encoders.base import error_detail, mismatch_summary

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
log = logging.getLogger("esc50_lightning.models.encoders.hf")


def transformers_module() -> Any:
    try:
        import transformers
    except ImportError:
        raise ESC50Error("Hugging Face encoders need the hf extra: pip install 'esc50-lightning[hf]'") from None
    return transformers


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hugging Face's loading reports, warnings and "Loading weights" bars off: what matters is checked
    and said in one line. (Downloads keep their progress bars: those are huggingface_hub's.)"""
    verbosity = transformers_module().utils.logging
    before, bars = verbosity.get_verbosity(), verbosity.is_progress_bar_enabled()
    verbosity.set_verbosity_error()
    verbosity.disable_progress_bar()
    try:
        yield
    finally:
        verbosity.set_verbosity(before)
        if bars:
            verbosity.enable_progress_bar()


def hf_cache_dir() -> Path:
    return weights_dir() / "huggingface"


def fetch_instructions(name: str) -> str:
    return (f"fetch it by hand where there is internet: `hf download {name} --local-dir DIR` (config.json, "
            f"preprocessor_config.json and model.safetensors), copy DIR here and pass "
            f"--model.net.init_args.weights DIR")


def looks_like_path(name: str) -> bool:
    """A Hub name is ``name`` or ``owner/name``; anything else is a folder (which must exist)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def model_folder(weights: str) -> Path:
    """The local folder of ``weights``: the folder itself, or the Hub snapshot fetched into our cache."""
    path = Path(weights).expanduser()
    if path.exists() or looks_like_path(weights):
        if not path.is_dir():
            raise ESC50Error(f"{weights}: {'no such folder' if not path.exists() else 'a file, not a folder'}; a "
                             "Hugging Face model is a folder holding config.json, preprocessor_config.json and "
                             "model.safetensors, as save_pretrained writes it")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    cache = hf_cache_dir()
    lock = cache.with_name("huggingface.lock")
    with file_lock(lock, lambda: log.warning(f"waiting for another process fetching into {cache} (lock {lock})")):
        try:
            folder = Path(snapshot_download(weights, cache_dir=cache, allow_patterns=["*.json", "*.safetensors"]))
            if not any((folder / f).exists() for f in WEIGHT_FILES):  # an older repository: PyTorch pickles only
                folder = Path(snapshot_download(weights, cache_dir=cache, allow_patterns=["*.json", "*.bin"]))
        except RepositoryNotFoundError:
            raise ESC50Error(f"{weights}: no such model on the Hugging Face Hub, or one that needs a login (and no "
                             "such folder here)") from None
        except Exception as err:  # noqa: BLE001 - offline, unreachable, refused: the same one line
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
            raise ESC50Error(f"{weights}: not in {cache} and the Hugging Face Hub cannot be reached{offline} "
                             f"({type(err).__name__}); {fetch_instructions(weights)}") from None
    return folder


def read_folder(weights: str) -> tuple[Path, Any, dict]:
    """``(folder, model config, feature extractor settings)`` of a checkpoint, each checked in one line."""
    transformers = transformers_module()
    folder = model_folder(weights)
    if not (folder / "config.json").is_file():
        raise ESC50Error(f"{weights}: no config.json in {folder}: not a Hugging Face model folder "
                         "(save_pretrained writes config.json, preprocessor_config.json and model.safetensors)")
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        raise ESC50Error(f"{weights}: no weights in {folder} (expected one of {', '.join(WEIGHT_FILES[:2])})")
    if not (folder / "preprocessor_config.json").is_file():
        raise ESC50Error(f"{weights}: no preprocessor_config.json in {folder}: the model's input pipeline is unknown "
                         "(save the feature extractor with save_pretrained into the same folder)")
    try:
        with quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            extractor = transformers.AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, OSError) as err:
        raise ESC50Error(f"{weights}: {folder} is not a model transformers can read "
                         f"({str(err).splitlines()[0][:200]})") from None
    return folder, config, extractor.to_dict()



def load_model(transformers: Any, folder: Path, config: Any, weights: str) -> nn.Module:
    """The checkpoint's classification model; one line unless every tensor of its base model loaded."""
    try:
        model, info = transformers.AutoModelForAudioClassification.from_pretrained(
            folder, config=config, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as err:  # noqa: BLE001 - truncated or unreadable weights, wrong shapes: one line
        first = error_detail(err, 200)
        if isinstance(err, ValueError) and "Unrecognized configuration class" in first:
            raise ESC50Error(f"{weights}: {type(config).__name__} has no audio-classification model in "
                             "transformers (AutoModelForAudioClassification)") from None
        raise ESC50Error(f"{weights}: its weights do not load into {type(config).__name__} "
                         f"({type(err).__name__}: {first}); a download cut short? fetch it again") from None
    prefix = f"{model.base_model_prefix}."
    missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix))
    unexpected = sorted(k for k in info["unexpected_keys"] if k.startswith(prefix))
    mismatched = sorted(f"{k[0]} {tuple(k[1])} (expected {tuple(k[2])})" if isinstance(k, tuple) else str(k)
                        for k in info["mismatched_keys"])  # (name, in the file, in the config)
    errors = list(info.get("error_msgs") or [])
    if missing or unexpected or mismatched or errors:
        raise ESC50Error(f"{weights}: not the weights of the {type(model).__name__} its config.json describes: "
                         f"{mismatch_summary(missing, unexpected, mismatched, errors)}")
    return model
