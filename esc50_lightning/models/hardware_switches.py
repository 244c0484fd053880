"""What ``AudioClassifier`` sets on the device it trains on: ``compile`` and ``channels_last``, as
the hardware policy (``esc50_lightning.hardware``) resolves them, and how a compiled network runs."""

from __future__ import annotations

import logging

import torch

from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import (
    AUTO,
    TRITON_MIN_CAPABILITY,
    compile_refusal,
    detect,
    resolve_switch,
    use_tensor_cores,
)

log = logging.getLogger("esc50_lightning")
# how the network is compiled: one static graph per mode (training, evaluation), at the shape of that
# mode's first batch; a batch of any other shape runs eagerly (``HardwareSwitches.run_net``)
COMPILE_OPTIONS: dict = {"dynamic": False}


class HardwareSwitches:
    """The ``LightningModule`` side of the hardware policy, mixed into ``AudioClassifier``: reads
    its ``net``, ``hparams`` (``compile``, ``channels_last``) and ``compiled``."""

    def configure_model(self) -> None:
        # Only under a Trainer: load_from_checkpoint calls this hook too, and a loaded model is
        # for inference or export, where compiling costs ~20 s and TorchScript/ONNX cannot trace it.
        if self._trainer is None or self.compiled:
            return
        device = self.trainer.strategy.root_device
        use_tensor_cores(device)  # in the process that trains (spawned DDP workers too)
        if hasattr(self.net, "set_channels_last"):
            self.net.set_channels_last(self.hardware_switches(device)["channels_last"])
        if self.wants_compile(device):
            self.compile_net()  # fit then test: compile once

    def wants_compile(self, device: torch.device) -> bool:
        """Whether to compile on ``device``: ``compile`` resolved by the hardware policy; where
        compiling cannot run, ``auto`` says why in one log line and ``true`` is refused."""
        requested = self.hparams.compile
        refusal = compile_refusal(device) if requested == AUTO or torch.device(device).type == "cuda" else None
        if requested == AUTO:
            if refusal is not None:
                log.info(f"compile off: {refusal}")
            return refusal is None
        if requested and refusal is not None:
            raise ESC50Error(f"--model.compile true: {refusal}; use --model.compile auto or false")
        return bool(requested)

    def hardware_switches(self, device: torch.device | str) -> dict[str, bool | None]:
        """What ``configure_model`` sets on ``device``: ``compile`` (as ``wants_compile`` decides
        it, without a word) and ``channels_last`` (``None`` for a network without that layout).
        What a run records it trained with (``training.settings.ran_with``)."""
        layout = None
        if hasattr(self.net, "set_channels_last"):
            requested = self.hparams.get("channels_last", False)  # absent from older checkpoints
            layout = resolve_switch("channels_last", requested, device)
        requested = self.hparams.compile
        if requested != AUTO:
            compiled = bool(requested)
        elif torch.device(device).type == "cuda" and not torch.cuda.is_initialized():
            # asked before the Trainer starts: NVML's word on the GPUs, as hardware.detect reads
            # them, so that a fork-based strategy (ddp_fork) still finds CUDA untouched
            capability = detect("cuda").capability
            compiled = capability is None or capability >= TRITON_MIN_CAPABILITY
        else:
            compiled = compile_refusal(device) is None
        return {"compile": compiled, "channels_last": layout}

    def compile_net(self) -> None:
        """Compile the network in place (``nn.Module.compile``: its checkpoint keys stay), one
        static graph per mode (``COMPILE_OPTIONS``; other shapes run eagerly, ``run_net``)."""
        self.net.compile(**COMPILE_OPTIONS)
        self.compiled = True
        self.compiled_shapes: dict[bool, tuple[int, ...]] = {}  # training mode -> the shape compiled

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """``self.net(x)``. Compiled, the first batch of each mode fixes the shape it runs
        compiled at; a batch of any other shape runs eagerly rather than compiling a graph of
        its own (an uneven last batch, a test fold of 400 at batch 128, a crop)."""
        if self.compiled:
            shape = self.compiled_shapes.setdefault(self.net.training, tuple(x.shape))
            if tuple(x.shape) != shape:
                with torch.compiler.set_stance("force_eager"):
                    return self.net(x)
        return self.net(x)

    @property
    def example_input_array(self) -> torch.Tensor | None:
        """The model summary's example input; none once the network is compiled, where the
        summary's forward pass would compile a throwaway graph for its batch of 2."""
        return None if getattr(self, "compiled", False) else self._example_input_array

    @example_input_array.setter
    def example_input_array(self, example: torch.Tensor | None) -> None:
        self._example_input_array = example
