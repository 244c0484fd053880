"""Hugging Face audio models as pretrained encoders (the ``hf`` extra: ``transformers``).

``HFAudio`` wraps any ``AutoModelForAudioClassification`` checkpoint, named on the Hub
(``MIT/ast-finetuned-audioset-10-10-0.4593``, the default: AST) or a local folder as
``save_pretrained`` writes it (``config.json``, ``preprocessor_config.json``, ``model.safetensors``).
``AST`` is the same class with AST's ESC-50 recipe as defaults.

The encoder is the checkpoint's whole classification model with its final ``nn.Linear`` (the
527-way AudioSet layer of AST) taken out; the embedding is what fed that layer (AST: the mean of
the CLS and distillation tokens, through the classifier's LayerNorm: 768-d), and ``head`` is a new
``nn.Linear(embedding_dim, num_classes)``. The removed layer stays as ``pretrained_head``, frozen,
for the parity test (``pretrained_logits``); it is never trained.

The input pipeline is the checkpoint's feature extractor, in torch and batched, so that it runs on
the training device and is part of the module (``classify``, ``export`` and ``ensemble`` need only
our checkpoint):

- ``ASTFeatureExtractor``: Kaldi fbank (``features.kaldi.KaldiFbank``: 25 ms Hann frames every
  10 ms at 16 kHz, pre-emphasis 0.97, 128 mel bins from 20 Hz to Nyquist, log), zero-padded or cut to
  ``max_length`` frames, then ``(x - mean) / (2 * std)``. Equal to the extractor's output (the test
  checks it to 1e-5).
- ``Wav2Vec2FeatureExtractor`` (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, ...): the waveform,
  normalised to zero mean and unit variance per clip when the extractor says so.

Other extractors (Whisper's, ...) are refused in one line. ``max_length`` other than the
checkpoint's (AST: 1,024 frames, 10 s) crops the time axis of AST's position embeddings around
their middle, as the AST authors' own code does for ESC-50's 512 frames (``ast_models.py``: "cut
(from middle) or interpolate"), or interpolates them where it is longer.

Weights: a Hub name is fetched once into ``~/.cache/esc50-lightning/weights/huggingface/`` (Hugging
Face's resumable download, its progress bars), under a lock; offline, one line names what to fetch
by hand. A checkpoint of ours stores the model's configuration and the feature extractor's settings
in its hyper-parameters (``checkpoint_init_args``) and its weights in the state dict, so it is rebuilt
without the Hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.augment import SpecAugment
from esc50_lightning.features.kaldi import KaldiFbank
from esc50_lightning.fetch import weights_dir
from esc50_lightning.locks import file_lock
from esc50_lightning.models.encoders.base import PretrainedEncoder, as_batch_of_waves, check_waveform_input

AST_NAME = "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_TYPE = "audio-spectrogram-transformer"
SUPPORTED_EXTRACTORS = ("ASTFeatureExtractor", "Wav2Vec2FeatureExtractor")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
log = logging.getLogger(__name__)


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


class ASTFrontend(nn.Module):
    """``ASTFeatureExtractor`` in torch, batched: ``(batch, samples)`` at 16 kHz to ``(batch, max_length,
    num_mel_bins)``: Kaldi fbank, zero-padded (or cut) to ``max_length`` frames, then normalised as
    ``(x - mean) / (2 * std)`` (the padding too, as the extractor does)."""

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 128, max_length: int = 1024,
                 mean: float = -4.2677393, std: float = 4.5689974, do_normalize: bool = True) -> None:
        super().__init__()
        self.fbank = KaldiFbank(sample_rate, num_mel_bins)
        self.max_length, self.mean, self.std, self.do_normalize = max_length, mean, std, do_normalize

    @property
    def pad_value(self) -> float:
        """A zero of the fbank once normalised: what AST's SpecAugment masks with (it masks before
        normalising)."""
        return (0.0 - self.mean) / (2 * self.std) if self.do_normalize else 0.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.fbank(wave)
        frames = x.shape[1]
        if frames < self.max_length:
            x = nn.functional.pad(x, (0, 0, 0, self.max_length - frames))
        elif frames > self.max_length:
            x = x[:, : self.max_length]
        return (x - self.mean) / (2 * self.std) if self.do_normalize else x

    def export_friendly(self) -> ASTFrontend:
        self.fbank.export_friendly()
        return self


class WaveNorm(nn.Module):
    """``Wav2Vec2FeatureExtractor`` in torch: the waveform, with ``do_normalize`` zero mean and unit
    variance per clip (``(x - mean) / sqrt(var + 1e-7)``)."""

    def __init__(self, do_normalize: bool = True) -> None:
        super().__init__()
        self.do_normalize = do_normalize
        self.pad_value = 0.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.do_normalize:
            return wave
        mean = wave.mean(-1, keepdim=True)
        return (wave - mean) / torch.sqrt(wave.var(-1, unbiased=False, keepdim=True) + 1e-7)


def build_frontend(extractor: dict, max_length: int | None, mean: float | None, std: float | None) -> nn.Module:
    kind = extractor.get("feature_extractor_type")
    if kind == "ASTFeatureExtractor":
        return ASTFrontend(int(extractor.get("sampling_rate", 16000)), int(extractor.get("num_mel_bins", 128)),
                           int(max_length or extractor.get("max_length", 1024)),
                           float(extractor.get("mean", -4.2677393) if mean is None else mean),
                           float(extractor.get("std", 4.5689974) if std is None else std),
                           bool(extractor.get("do_normalize", True)))
    if kind == "Wav2Vec2FeatureExtractor":
        if int(extractor.get("feature_size", 1)) != 1:
            raise ESC50Error(f"Wav2Vec2FeatureExtractor with feature_size {extractor['feature_size']}: only raw mono "
                             "waveforms (feature_size 1) are supported")
        if max_length is not None or mean is not None or std is not None:
            raise ESC50Error("max_length, mean and std are AST settings: a model that reads the waveform has none")
        return WaveNorm(bool(extractor.get("do_normalize", True)))
    raise ESC50Error(f"the checkpoint's input pipeline is {kind}, which has no batched torch version here "
                     f"(supported: {', '.join(SUPPORTED_EXTRACTORS)})")


def final_linear(model: nn.Module, num_labels: int) -> str:
    """Name of the classification model's last ``nn.Linear`` with ``num_labels`` outputs, outside its base
    model: AST's ``classifier.dense``, wav2vec 2.0's ``classifier``."""
    prefix = getattr(model, "base_model_prefix", "")
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_labels and not name.startswith(f"{prefix}.")]
    if not names:
        raise ESC50Error(f"{type(model).__name__}: no final nn.Linear with {num_labels} outputs to replace by a "
                         "new head")
    return names[-1]


def resize_ast_positions(model: nn.Module, max_length: int) -> None:
    """AST's position embeddings for ``max_length`` frames: the time axis cut around its middle (shorter) or
    bilinearly interpolated (longer), as the AST authors adapt their AudioSet model to ESC-50's 512 frames."""
    config = model.config
    embeddings = model.base_model.embeddings
    f_dim, t_old = embeddings.get_shape(config)
    if max_length == config.max_length:
        return
    config.max_length = max_length
    f_new, t_new = embeddings.get_shape(config)
    if f_new != f_dim or t_new < 1:
        raise ESC50Error(f"AST max_length {max_length} gives {t_new} time patches: too short")
    pos = embeddings.position_embeddings.data
    tokens, grid = pos[:, :2], pos[:, 2:].reshape(1, f_dim, t_old, -1).permute(0, 3, 1, 2)  # (1, d, f, t)
    if t_new <= t_old:
        start = t_old // 2 - t_new // 2
        grid = grid[..., start : start + t_new]
    else:
        grid = nn.functional.interpolate(grid, size=(f_dim, t_new), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(1, f_dim * t_new, -1)
    embeddings.position_embeddings = nn.Parameter(torch.cat([tokens, grid], dim=1).contiguous())


def portable_config(config: Any) -> dict:
    """The model configuration as a plain dict, without its label names (527 of them for AudioSet)."""
    values = config.to_dict()
    values["num_labels"] = config.num_labels
    for key in ("id2label", "label2id", "transformers_version", "_name_or_path"):
        values.pop(key, None)
    return values


class HFAudio(PretrainedEncoder):
    """A Hugging Face audio classification model as our encoder, with a new ``num_classes`` head.

    Args:
        n_bins, n_frames, num_classes: from the DataModule (``--data.feature waveform``: 1 and the
            clip's samples).
        weights: a Hub name (fetched into our cache) or a local folder as ``save_pretrained`` writes
            it; ``None``: random weights of ``config`` (default ``ASTConfig()``, the size of the
            published AST: timing and tests only).
        config, preprocessor: the model's configuration and the feature extractor's settings, as
            dicts: what our checkpoints store, so that they rebuild the model without the Hub (with
            ``weights`` None). Not needed by hand.
        max_length: AST's frames (the checkpoint's: 1,024, 10 s); ``512`` as the AST authors for
            ESC-50's 5 s clips (500 frames); the position embeddings follow (module docstring).
        mean, std: AST's normalisation (``(x - mean) / (2 std)``); default the extractor's (AudioSet's
            -4.2677393 and 4.5689974). The AST ESC-50 recipe used ESC-50's: -6.6268077 and 5.358466.
        freq_masks, freq_width, time_masks, time_width: SpecAugment on the encoder's input in
            training (AST's ESC-50 recipe: one mask of up to 24 bins and one of up to 96 frames),
            masked with a normalised zero, as the recipe masks before normalising.
        freeze: the linear probe (encoder frozen and in eval mode for good).
        head_dropout: dropout before the new head.
    """

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int, weights: str | None = AST_NAME,
        config: dict | None = None, preprocessor: dict | None = None, max_length: int | None = None,
        mean: float | None = None, std: float | None = None, freq_masks: int = 0, freq_width: int = 24,
        time_masks: int = 0, time_width: int = 96, freeze: bool = False, head_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_classes, freeze, head_dropout)
        check_waveform_input(type(self).__name__, n_bins)
        transformers = transformers_module()
        self.source = weights
        with quiet_transformers():
            if weights is not None:
                folder, hf_config, extractor = read_folder(weights)
                self.frontend_module = build_frontend(extractor, max_length, mean, std)
                model = self._load_model(transformers, folder, hf_config, weights)
            else:
                hf_config = self._config_from_dict(transformers, config)
                extractor = dict(preprocessor) if preprocessor else transformers.ASTFeatureExtractor().to_dict()
                self.frontend_module = build_frontend(extractor, max_length, mean, std)
                model = transformers.AutoModelForAudioClassification.from_config(hf_config)
        if isinstance(self.frontend_module, ASTFrontend):
            if model.config.model_type != AST_TYPE:
                raise ESC50Error(f"{weights}: an ASTFeatureExtractor with a {model.config.model_type} model")
            resize_ast_positions(model, self.frontend_module.max_length)
        self.model_type = model.config.model_type
        self.sample_rate = int(extractor.get("sampling_rate", 16000))
        self.preprocessor = extractor
        name = final_linear(model, model.config.num_labels)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        self.pretrained_head = getattr(parent, child).requires_grad_(False)
        setattr(parent, child, nn.Identity())
        self.model = model.train()  # from_pretrained leaves it in eval mode, and Lightning keeps modules' modes
        self.embedding_dim = self.pretrained_head.in_features
        self.head = nn.Linear(self.embedding_dim, num_classes)
        self.spec_augment = SpecAugment(freq_masks, freq_width, time_masks, time_width,
                                        value=self.frontend_module.pad_value)
        if freeze:
            self.set_encoder_frozen(True)

    @staticmethod
    def _config_from_dict(transformers: Any, config: dict | None) -> Any:
        if not config:
            return transformers.ASTConfig()
        values = dict(config)
        model_type = values.pop("model_type", AST_TYPE)
        return transformers.AutoConfig.for_model(model_type, **values)

    @staticmethod
    def _load_model(transformers: Any, folder: Path, config: Any, weights: str) -> nn.Module:
        """The checkpoint's classification model; one line unless every tensor of its base model loaded."""
        try:
            model, info = transformers.AutoModelForAudioClassification.from_pretrained(
                folder, config=config, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True)
        except Exception as err:  # noqa: BLE001 - truncated or unreadable weights, wrong shapes: one line
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else "no detail"
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
        if missing or unexpected or mismatched or info.get("error_msgs"):
            def few(items: list[str]) -> str:
                return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

            found = [f"{len(missing)} missing keys ({few(missing)})" if missing else "",
                     f"{len(unexpected)} unexpected keys ({few(unexpected)})" if unexpected else "",
                     f"{len(mismatched)} mismatched shapes ({few(mismatched)})" if mismatched else "",
                     f"errors ({few(list(info['error_msgs']))})" if info.get("error_msgs") else ""]
            raise ESC50Error(f"{weights}: not the weights of the {type(model).__name__} its config.json describes: "
                             f"{'; '.join(f for f in found if f)}")
        return model

    # ----- the contract -----
    def encoder_modules(self) -> list[nn.Module]:
        return [self.model]

    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        """The extractor's input to the model: AST ``(batch, max_length, mel bins)``, wav2vec 2.0
        ``(batch, samples)``; SpecAugment in training (AST), unless the encoder is frozen."""
        wave = as_batch_of_waves(wave)
        with torch.autocast(wave.device.type, enabled=False):  # log filter banks in fp32 under bf16/fp16 autocast
            x = self.frontend_module(wave)
        if x.dim() == 3 and self.training and not self.encoder_frozen:  # as PANNs: no masks while frozen
            x = self.spec_augment(x.transpose(1, 2)).transpose(1, 2)
        return x

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=features).logits

    def pretrained_logits(self, wave: torch.Tensor) -> torch.Tensor:
        """The checkpoint's own classifier (AST: AudioSet's 527 classes): the parity test's output."""
        return self.pretrained_head(self.embed(wave))

    def settings(self) -> dict:
        front = self.frontend_module
        extra = {"max_length": front.max_length, "mean": front.mean, "std": front.std} \
            if isinstance(front, ASTFrontend) else {}
        return {**super().settings(), "model_type": self.model_type, **extra}

    def checkpoint_init_args(self) -> dict:
        """The ``init_args`` that rebuild this network from our checkpoint alone: no Hub name or folder,
        the configuration (position embeddings already sized) and the extractor's settings."""
        front = self.frontend_module
        args: dict = {"weights": None, "config": portable_config(self.model.config), "preprocessor": self.preprocessor}
        if isinstance(front, ASTFrontend):
            args.update(max_length=front.max_length, mean=front.mean, std=front.std)
        return args

    def export_friendly(self) -> HFAudio:
        if hasattr(self.frontend_module, "export_friendly"):
            self.frontend_module.export_friendly()
        return self


class AST(HFAudio):
    """``HFAudio`` with the AST authors' ESC-50 recipe as defaults (Gong et al. 2021, ``egs/esc50/run_esc.sh``):
    the AudioSet-fine-tuned AST (``MIT/ast-finetuned-audioset-10-10-0.4593``, 0.459 mAP), 512 frames,
    ESC-50's normalisation statistics, SpecAugment of one 24-bin and one 96-frame mask."""

    def __init__(
        self, n_bins: int, n_frames: int, num_classes: int, weights: str | None = AST_NAME,
        config: dict | None = None, preprocessor: dict | None = None, max_length: int | None = 512,
        mean: float | None = -6.6268077, std: float | None = 5.358466, freq_masks: int = 1, freq_width: int = 24,
        time_masks: int = 1, time_width: int = 96, freeze: bool = False, head_dropout: float = 0.0,
    ) -> None:
        super().__init__(n_bins, n_frames, num_classes, weights, config, preprocessor, max_length, mean, std,
                         freq_masks, freq_width, time_masks, time_width, freeze, head_dropout)
