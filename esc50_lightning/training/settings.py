"""What a run actually trained with where ``auto`` let the machine choose: the precision, the
compilation and the memory layout (``RESOLVED``).

A run's config records ``auto`` as written; what it resolved to is recorded beside it: in every
checkpoint (``RanWith``, a callback's state) and in a fold's ``result.json`` (``resolved``).
``training.recipe.setting_differences`` compares these settings as resolved wherever both records
know it (``resolution``), so a fold started in fp32 on a CPU is not resumed in bf16 where ``auto``
means bf16, and a setting pinned to what ``auto`` chose is no change.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from esc50_lightning.hardware import AUTO

# the settings ``auto`` can leave to the machine, as flat config keys, and how to pin each one
RESOLVED = {"trainer.precision": "--trainer.precision {}", "model.compile": "--model.compile {}",
            "model.channels_last": "--model.channels_last {}"}
PRECISION_ALIASES = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true", "64": "64-true"}  # Lightning's


def normalized(key: str, value: object) -> object:
    """``value`` of setting ``key`` in one spelling: Lightning's precision aliases (``bf16``,
    ``32``) as the names it runs them under (``bf16-mixed``, ``32-true``)."""
    if key == "trainer.precision" and value is not None:
        return PRECISION_ALIASES.get(str(value), str(value))
    return value


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in (config or {}).items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def resolution(config: dict, record: dict | None = None) -> dict:
    """What a record says its ``RESOLVED`` settings ran as: ``record``'s ``resolved`` (a fold's
    result, a checkpoint's ``RanWith``) where it has them; else an explicit value is its own
    resolution, and an ``auto`` precision the ``precision_used`` a result reports (records written
    before ``resolved`` was). A setting left to ``auto`` with no word of how it resolved is left out."""
    record = record or {}
    recorded = record.get("resolved") or {}
    flat = _flat(config)
    out = {}
    for key in RESOLVED:
        value = flat.get(key)
        if recorded.get(key) is not None:
            out[key] = normalized(key, recorded[key])
        elif key == "trainer.precision" and value in (None, AUTO) and record.get("precision_used"):
            out[key] = normalized(key, record["precision_used"])
        elif value is not None and value != AUTO:
            out[key] = normalized(key, value)
    return out


def resolution_here(config: dict, ran: dict | None) -> dict:
    """``resolution`` of a run about to train, with ``ran`` (its ``ran_with``, where its Trainer
    and model exist) for what ``auto`` resolves to on this machine."""
    return {**resolution(config), **{key: value for key, value in (ran or {}).items() if value is not None}}


def ran_with(trainer: Trainer, model: LightningModule) -> dict:
    """What ``trainer`` trains ``model`` with: the precision Lightning runs, and the switches the
    classifier sets for the device (``AudioClassifier.hardware_switches``; ``None`` for one that is
    no setting of this network, channels-last of a 1-D one)."""
    switches = model.hardware_switches(trainer.strategy.root_device) if hasattr(model, "hardware_switches") else {}
    return {"trainer.precision": normalized("trainer.precision", str(trainer.precision)),
            "model.compile": switches.get("compile"), "model.channels_last": switches.get("channels_last")}


def described(key: str, value: object, resolved: object, label: str) -> str:
    """``'auto' (ran as '32-true')``, or the value alone where it is its own resolution."""
    return repr(value) if normalized(key, value) == resolved else f"{value!r} ({label.format(repr(resolved))})"


def pin_hint(keys: list[str], ran: dict) -> str:
    """``pin --trainer.precision 32-true``: the options that go on as the record ran."""
    return " ".join(RESOLVED[key].format(str(ran[key]).lower() if isinstance(ran[key], bool) else ran[key])
                    for key in keys)


class RanWith(Callback):
    """Saves ``ran_with`` in every checkpoint (its state, under ``RanWith``): what a resume of the
    checkpoint is compared against (``checkpoint_ran_with``)."""

    def __init__(self) -> None:
        self.ran: dict = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.ran = ran_with(trainer, pl_module)

    def state_dict(self) -> dict:
        return dict(self.ran)

    def load_state_dict(self, state_dict: dict) -> None:
        pass  # a resumed run records what it runs with itself; it was compared with this before it started


def checkpoint_ran_with(path: str | Path) -> dict | None:
    """The ``RanWith`` record of checkpoint ``path``, or ``None`` (none there, or no readable file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - no record: the settings are compared as written
        return None
    ran = state.get("callbacks", {}).get(RanWith.__qualname__) if isinstance(state, dict) else None
    return dict(ran) if isinstance(ran, dict) else None
