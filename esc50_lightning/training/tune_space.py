"""A search space for ``tune``: YAML keyed by the names the CLI uses, each a range or choices.

    model.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float, log-uniform
    model.net.init_args.dropout: {low: 0.0, high: 0.5}                      # float, uniform
    model.net.init_args.kernel_size: {low: 3, high: 9, step: 2}             # int: 3, 5, 7, 9
    data.n_mels: {choices: [64, 128]}
    model.net.init_args.channels: {choices: [[128, 128], [256, 256]]}      # lists too

A range is an integer range where the base config's value is an integer (``data.n_mels: 128``),
a float range where it is a float (``dropout: 0.3``), else as ``low``/``high`` are written;
``type: int`` or ``type: float`` says so outright. An unknown key, a setting no trial may change
(what decides the clips that score it) or an impossible range is one line naming it
(``ESC50Error``), before any trial runs.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.recipe import flat_settings

FIELDS = ("low", "high", "log", "step", "choices", "type")
# what decides which clips score a trial: searching it would compare trials on different clips
FIXED = ("data.fold", "data.val_strategy", "data.val_fraction", "data.seed", "data.root", "data.allow_subset")


def _number(value: object) -> object:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: take it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _label(choice: object) -> object:
    """What Optuna stores for a choice: scalars as they are, lists and mappings as JSON text."""
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)


@dataclass(frozen=True)
class Param:
    """One searched setting: ``choices``, or ``kind`` (``int``/``float``) from ``low`` to ``high``."""

    key: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial: object) -> object:
        """This setting's value for an Optuna ``trial``."""
        if self.kind == "choice":
            labels = [_label(c) for c in self.choices]
            return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def value(self, stored: object) -> object:
        """The setting's value from what Optuna stored (``trial.params[key]``)."""
        if self.kind == "choice":
            return self.choices[[_label(c) for c in self.choices].index(stored)]
        return stored

    def stored(self, value: object) -> object | None:
        """What Optuna would store for ``value`` (``None``: outside this setting's range or choices)."""
        if self.kind == "choice":
            labels = [_label(c) for c in self.choices]
            return _label(value) if _label(value) in labels else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return None
        if self.step and abs((value - self.low) / self.step - round((value - self.low) / self.step)) > 1e-9:
            return None
        return int(value) if self.kind == "int" else float(value)

    def candidates(self) -> list:
        """Values that span the range (its ends) or every choice: what the config must accept."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def spec(self) -> dict:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        spec = {"type": self.kind, "low": self.low, "high": self.high}
        return {**spec, **({"step": self.step} if self.step else {}), **({"log": True} if self.log else {})}


def argument(key: str, value: object) -> str:
    """``--key=value`` as LightningCLI parses it (JSON is YAML: lists, strings, numbers)."""
    return f"--{key}={json.dumps(value)}"


def parse_param(key: str, spec: object, base: dict) -> Param:
    """One entry of the space, checked against the base config's flat settings ``base``."""
    where = f"space: {key}"
    if key.startswith(FIXED):
        raise ESC50Error(f"{where}: decides which clips score a trial, so a search cannot change it")
    if key not in base:
        close = difflib.get_close_matches(key, list(base), n=1)
        prefix = [k for k in base if k.startswith(key + ".")]
        hint = (f"; it holds settings, search one of them ({prefix[0]}, ...)" if prefix else
                f"; did you mean {close[0]}?" if close else "")
        raise ESC50Error(f"{where}: not a setting of the base config{hint}")
    if not isinstance(spec, dict) or not spec:
        raise ESC50Error(f"{where}: give a range {{low: A, high: B}} or {{choices: [...]}}, got {spec!r}")
    unknown = [f for f in spec if f not in FIELDS]
    if unknown:
        raise ESC50Error(f"{where}: unknown field {unknown[0]!r} (one of {', '.join(FIELDS)})")
    if "choices" in spec:
        choices = spec["choices"]
        extra = [f for f in spec if f not in ("choices", "type")]
        if extra:
            raise ESC50Error(f"{where}: choices take no {extra[0]!r}")
        if not isinstance(choices, list) or not choices:
            raise ESC50Error(f"{where}: choices must be a non-empty list, got {choices!r}")
        labels = [_label(_number(c)) for c in choices]
        if len(set(map(json.dumps, labels))) < len(labels):
            raise ESC50Error(f"{where}: a choice is listed twice ({choices})")
        return Param(key, "choice", choices=tuple(_number(c) for c in choices))
    missing = [f for f in ("low", "high") if f not in spec]
    if missing:
        raise ESC50Error(f"{where}: a range needs low and high (no {missing[0]})")
    low, high, step = _number(spec["low"]), _number(spec["high"]), _number(spec.get("step"))
    log = spec.get("log", False)
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ESC50Error(f"{where}: {name} must be a number, got {v!r}")
    if not isinstance(log, bool):
        raise ESC50Error(f"{where}: log must be true or false, got {log!r}")
    current = base[key]
    kind = spec.get("type") or ("int" if isinstance(current, int) and not isinstance(current, bool) else
                                "float" if isinstance(current, float) else
                                "int" if all(isinstance(v, int) for v in (low, high, step) if v is not None)
                                else "float")
    if kind not in ("int", "float"):
        raise ESC50Error(f"{where}: type must be int or float, got {kind!r}")
    if low >= high:
        raise ESC50Error(f"{where}: low {low} must be below high {high}")
    if log and low <= 0:
        raise ESC50Error(f"{where}: a log range must start above 0, got low {low}")
    if log and step is not None and kind == "float":
        raise ESC50Error(f"{where}: a log range takes no step")
    if step is not None and not 0 < step <= high - low:
        raise ESC50Error(f"{where}: step {step} must be above 0 and at most high - low ({high - low:g})")
    if kind == "int":
        bad = [(n, v) for n, v in (("low", low), ("high", high), ("step", step)) if v is not None and v != int(v)]
        if bad:
            raise ESC50Error(f"{where}: an integer setting needs whole numbers, got {bad[0][0]} {bad[0][1]}")
        if log and step not in (None, 1):
            raise ESC50Error(f"{where}: an integer log range takes no step")
        low, high, step = int(low), int(high), int(step) if step is not None else None
    else:
        low, high, step = float(low), float(high), float(step) if step is not None else None
    return Param(key, kind, low, high, step, log)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @classmethod
    def parse(cls, entries: object, base_config: dict) -> Space:
        if not isinstance(entries, dict) or not entries:
            raise ESC50Error("space: expected a mapping of settings to ranges, e.g. "
                             "'model.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}'")
        base = flat_settings(base_config)
        return cls(tuple(parse_param(str(key), spec, base) for key, spec in entries.items()))

    @classmethod
    def load(cls, path: str | Path, base_config: dict) -> Space:
        try:
            entries = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ESC50Error(f"space {path}: cannot read it ({err.strerror or err})") from None
        except yaml.YAMLError as err:
            raise ESC50Error(f"space {path}: not YAML ({str(err).splitlines()[0]})") from None
        return cls.parse(entries, base_config)

    def suggest(self, trial: object) -> dict:
        """``{key: value}`` for an Optuna trial."""
        return {p.key: p.suggest(trial) for p in self.params}

    def values(self, stored: dict) -> dict:
        """``{key: value}`` from a finished trial's ``params``."""
        return {p.key: p.value(stored[p.key]) for p in self.params if p.key in stored}

    def arguments(self, values: dict) -> list[str]:
        return [argument(key, value) for key, value in values.items()]

    def baseline(self, base_config: dict) -> dict | None:
        """The base config's own values as Optuna stores them, or ``None`` if one lies outside the space."""
        base = flat_settings(base_config)
        stored = {p.key: p.stored(base.get(p.key)) for p in self.params}
        return None if any(v is None for v in stored.values()) else stored

    def spec(self) -> dict:
        """The space as stored with the study (what a re-run must match)."""
        return {p.key: p.spec() for p in self.params}

    def check_accepted(self, parse: object) -> None:
        """Parse the base config with every range's ends and every choice (``parse(args)`` raises
        ``ESC50Error`` on a value the config refuses), naming the first setting refused."""
        rounds = max(len(p.candidates()) for p in self.params)
        for i in range(rounds):
            values = {p.key: p.candidates()[i % len(p.candidates())] for p in self.params}
            try:
                parse(self.arguments(values))
            except ESC50Error as err:
                for key, value in values.items():
                    try:
                        parse([argument(key, value)])
                    except ESC50Error as one:
                        raise ESC50Error(f"space: {key}: the config refuses {value!r} ({one})") from None
                raise ESC50Error(f"space: the config refuses {values} ({err})") from None


def differences(stored: dict, space: dict) -> list[str]:
    """``key old -> new`` for each searched setting added, removed or given another range."""
    keys = list(stored) + [k for k in space if k not in stored]
    return [f"{key} {stored.get(key, 'not searched')} -> {space.get(key, 'not searched')}" for key in keys
            if json.dumps(stored.get(key), sort_keys=True) != json.dumps(space.get(key), sort_keys=True)]
