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

``max_length`` other than the checkpoint's (AST: 1,024 frames, 10 s) crops the time axis of AST's
position embeddings around their middle, as the AST authors' own code does for ESC-50's 512 frames
(``ast_models.py``: "cut (from middle) or interpolate"), or interpolates them where it is longer.

A checkpoint of ours stores the model's configuration and the feature extractor's settings in its
hyper-parameters (``checkpoint_init_args``) and its weights in the state dict, so it is rebuilt
without the Hub.

Here: the model surgery (final layer out, positions resized) and the encoder. Finding, reading and
loading a Hub or local model folder: ``hf_folder``; the feature extractors in torch: ``hf_frontends``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from esc50_lightning.errors import ESC50Error
from esc50_lightning.features.augment import SpecAugment
from esc50_lightning.models.encoders.base import PretrainedEncoder, as_batch_of_waves, check_waveform_input
from esc50_lightning.models.encoders.hf_folder import (
    WEIGHT_FILES,
    fetch_instructions,
    hf_cache_dir,
    load_model,
    looks_like_path,
    model_folder,
    quiet_transformers,
    read_folder,
    transformers_module,
)
from esc50_lightning.models.encoders.hf_frontends import SUPPORTED_EXTRACTORS, ASTFrontend, WaveNorm, build_frontend

__all__ = [  # the names of this module before its folder and front-end parts moved out (checkpoints, imports)
    "AST", "AST_NAME", "AST_TYPE", "SUPPORTED_EXTRACTORS", "WEIGHT_FILES", "ASTFrontend", "HFAudio", "WaveNorm",
    "build_frontend", "fetch_instructions", "final_linear", "hf_cache_dir", "looks_like_path", "model_folder",
    "portable_config", "quiet_transformers", "read_folder", "resize_ast_positions", "transformers_module",
]
AST_NAME = "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_TYPE = "audio-spectrogram-transformer"


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
                model = load_model(transformers, folder, hf_config, weights)
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
