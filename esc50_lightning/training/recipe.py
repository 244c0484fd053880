"""Whether two configs are one recipe: settings flattened to dotted names, and the ones that
differ (where and how verbosely a run ran left out; ``auto`` ones compared as they resolved)."""

from __future__ import annotations

from esc50_lightning.training.settings import RESOLVED, described

# settings that say where or how verbosely a fold ran, not what was trained
NOT_COMPARED = ("trainer.logger", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "trainer.log_every_n_steps", "data.fold", "data.root", "data.cache_dir", "data.num_workers",
                "data.on_device", "ckpt_path")


def flat_settings(config: dict, prefix: str = "") -> dict:
    """``{"trainer": {"max_epochs": 2}}`` -> ``{"trainer.max_epochs": 2}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# callbacks every run gets (``training.trainer.standard_callbacks``): earlier versions listed them in the config
STANDARD_CALLBACKS = ("ModelCheckpoint", "LearningRateMonitor", "ConfusionFigure")


def comparable(config: dict) -> dict:
    """``config`` flattened, with callbacks named by class (not module path) and the standard ones
    left out: a fold trained before a callback moved module is still the same recipe."""
    flat = flat_settings(config)
    callbacks = flat.get("trainer.callbacks")
    if isinstance(callbacks, list):
        named = [{**c, "class_path": str(c.get("class_path", "")).rsplit(".", 1)[-1]} if isinstance(c, dict) else c
                 for c in callbacks]
        flat["trainer.callbacks"] = [c for c in named if not (isinstance(c, dict) and
                                                              c["class_path"] in STANDARD_CALLBACKS)] or None
    return flat


def setting_differences(trained: dict, requested: dict, trained_ran: dict | None = None,
                        requested_ran: dict | None = None, as_written: bool = False,
                        label: str = "runs as {} here") -> list[str]:
    """``name trained -> requested`` for each setting both configs hold with different values;
    where and how verbosely a fold ran (``NOT_COMPARED``) does not count. A setting ``auto`` can
    leave to the machine (``settings.RESOLVED``) is compared as it resolved where both
    ``trained_ran`` and ``requested_ran`` say (``settings.resolution``): ``auto`` that ran in fp32
    differs from ``auto`` that would run in bf16 (``label`` describes the latter), and not from
    a pinned ``32-true``. ``as_written``: two records of one request (the folds of a sweep) also
    agree where they hold the same value, whatever each machine resolved it to."""
    old, new = comparable(trained), comparable(requested)
    old_ran, new_ran = trained_ran or {}, requested_ran or {}
    changed = []
    for key in old:
        if key not in new or key.startswith(NOT_COMPARED):
            continue
        if key in RESOLVED and old_ran.get(key) is not None and new_ran.get(key) is not None:
            if old_ran[key] != new_ran[key] and not (as_written and old[key] == new[key]):
                changed.append(f"{key} {described(key, old[key], old_ran[key], 'ran as {}')} -> "
                               f"{described(key, new[key], new_ran[key], label)}")
        elif old[key] != new[key]:
            changed.append(f"{key} {old[key]!r} -> {new[key]!r}")
    return changed


def resolved_changes(trained_ran: dict, requested_ran: dict) -> list[str]:
    """The ``settings.RESOLVED`` keys both know and resolve differently (what to pin to go on)."""
    return [key for key in RESOLVED if trained_ran.get(key) is not None and requested_ran.get(key) is not None
            and trained_ran[key] != requested_ran[key]]
