"""What a study leaves: HParams rows, pictures, ``best.yaml``, ``study.json`` and its status.

One TensorBoard HParams row per finished trial in ``trials/trial<N>/summary`` (the sweep summary's
columns from ``training.summary.run_hparams``, the searched values, the objective and each fold's
validation accuracy), so ``tensorboard --logdir <study_dir>`` lists the trials beside their folds'
curves. ``best.yaml`` is the base config file with the best trial's values written in.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from torch.utils.tensorboard import SummaryWriter

from esc50_lightning.atomic import write_json_atomic, write_text_atomic
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.recipe import NOT_COMPARED, setting_differences
from esc50_lightning.training.summary import EVENTS, run_hparams, write_session

STATES = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")


def short_key(key: str) -> str:
    """``model.optimizer.init_args.lr`` -> ``model.optimizer.lr``: a column name."""
    return key.replace(".init_args", "")


def trial_config(trial_dir: Path) -> dict:
    """The resolved config a trial's first fold trained with (its ``config.yaml``), else ``{}``."""
    for path in sorted(Path(trial_dir).glob("fold*/config.yaml")):
        try:
            return yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
    return {}


def fold_scores(trial_dir: Path) -> dict[int, float]:
    scores = {}
    for path in sorted(Path(trial_dir).glob("fold*/validation.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        scores[saved["fold"]] = saved["val_accuracy"]
    return scores


def write_trial_row(settings: object, number: int, values: dict, state: str, trial_dir: Path) -> Path:
    """The trial's HParams row in ``<trial_dir>/summary``: its hyper-parameters (as a sweep's row
    names them, and each searched value), ``hp/val_accuracy_mean`` over the folds scored (all of
    them unless pruned) and ``hp/fold<K>_val_accuracy``."""
    out = Path(trial_dir) / "summary"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{EVENTS}*"):
        old.unlink()
    scores = fold_scores(trial_dir)
    config = trial_config(trial_dir)
    hp = {**run_hparams(config, {}, "trial"), "study": settings.name, "trial": number, "state": state,
          "folds_scored": len(scores), "test_folds_evaluated": "False",
          **{short_key(k): v for k, v in values.items()}}
    metrics = {f"hp/fold{fold}_val_accuracy": value for fold, value in scores.items()}
    if scores:
        metrics = {"hp/val_accuracy_mean": sum(scores.values()) / len(scores), **metrics}
    writer = SummaryWriter(str(out))
    try:
        write_session(writer, hp, metrics)
        for fold, value in scores.items():
            writer.add_scalar("trial/fold_val_accuracy", value, fold)
    finally:
        writer.close()
    return out


def write_missing_rows(settings: object, study: optuna.Study) -> None:
    """Rows for finished trials that have a folder here but no row (a worker killed in between)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        trial_dir = settings.trial_dir(trial.number)
        if trial_dir.is_dir() and not (trial_dir / "summary").is_dir():
            write_trial_row(settings, trial.number, settings.space.values(trial.params),
                            trial.state.name.lower(), trial_dir)


def draw_pictures(study: optuna.Study, study_dir: Path) -> list[Path]:
    """``history.png`` (objective per trial, best so far) and ``importances.png`` (fANOVA), with
    ``optuna.visualization.matplotlib``; a picture that needs more trials is skipped, saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    drawn = []
    for name, view in (("history", views.plot_optimization_history), ("importances", views.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's matplotlib views are "experimental"
                ax = view(study)
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            figure.savefig(study_dir / f"{name}.png", dpi=110)
            plt.close(figure)
            drawn.append(study_dir / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"tune {study.study_name}: {name}.png not drawn yet ({why})")
    return drawn


def set_key(tree: dict, key: str, value: object) -> None:
    *path, last = key.split(".")
    for part in path:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[last] = value


def command_line_settings(fit_args: list[str]) -> tuple[str | None, dict]:
    """``(config file, {key: value})`` of ``fit`` options ``--config F --a.b V --c.d=W``."""
    config, settings, args = None, {}, list(fit_args)
    i = 0
    while i < len(args):
        arg = args[i]
        key, value = (arg[2:].split("=", 1) + [None])[:2] if arg.startswith("--") else (None, None)
        if key is not None and value is None and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        if key == "config":
            config = value
        elif key is not None:
            settings[key] = yaml.safe_load(value) if value is not None else True
        i += 1
    return config, settings


def best_config(settings: object, trial: FrozenTrial) -> str:
    """The base config file's YAML with the command line's settings (but where and how verbosely
    it ran) and the best trial's values written in: what ``sweep --config`` takes unchanged."""
    config_file, overrides = command_line_settings(settings.fit_args)
    tree = yaml.safe_load(Path(config_file).read_text()) if config_file else {}
    values = settings.space.values(trial.params)
    overrides = {k: v for k, v in overrides.items() if not k.startswith(NOT_COMPARED)}  # not this machine's paths
    for key, value in {**overrides, **values}.items():
        set_key(tree, key, value)
    scores = ", ".join(f"fold {k[4]} {v:.4f}" for k, v in sorted(trial.user_attrs.items())
                       if k.endswith("_val_accuracy") and v is not None)
    header = (f"# tune {settings.name}: best trial {trial.number} of the study in {settings.storage}\n"
              f"# validation accuracy {trial.value:.4f} (mean over {scores}); no test fold evaluated\n"
              f"# base: {config_file or 'the defaults'}"
              f"{' with ' + ' '.join(f'--{k}={json.dumps(v)}' for k, v in overrides.items()) if overrides else ''}\n"
              f"# searched: {json.dumps(values)}\n")
    return header + yaml.safe_dump(tree, sort_keys=False)


def write_best(settings: object, study: optuna.Study, targets: list[Path]) -> list[Path]:
    """``best.yaml`` (and each of ``targets``), checked to resolve to the best trial's config."""
    from esc50_lightning.training.tune_trial import parse_fit

    trial = best_trial(study)
    if trial is None:
        return []
    text = best_config(settings, trial)
    written = []
    for target in [settings.study_dir / "best.yaml", *targets]:
        write_text_atomic(Path(target), text)
        written.append(Path(target))
    try:
        wanted = parse_fit([*settings.fit_args, *settings.space.arguments(settings.space.values(trial.params))])
        changed = setting_differences(parse_fit([f"--config={written[0]}"]), wanted)
    except ESC50Error as err:
        changed = [f"not parsed: {err}"]
    if changed:
        print(f"tune {settings.name}: warning: {written[0]} differs from the best trial's settings "
              f"({'; '.join(changed)})")
    return written


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def trial_summary(trial: FrozenTrial, space: object) -> dict:
    folds = {int(k[4]): v for k, v in trial.user_attrs.items() if k.endswith("_val_accuracy") and v is not None}
    seconds = sum(v for k, v in trial.user_attrs.items() if k.endswith("_train_seconds") and v is not None)
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": space.values(trial.params), "fold_val_accuracy": folds, "train_seconds": round(seconds, 1),
            "wall_seconds": None if wall is None else round(wall, 1), "pruned_at": trial.user_attrs.get("pruned_at"),
            "baseline": bool(trial.user_attrs.get("baseline")),
            "test_folds_evaluated": trial.user_attrs.get("test_folds_evaluated", False)}


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {state.lower(): sum(t.state.name == state for t in trials) for state in STATES}


def write_study_json(settings: object, study: optuna.Study) -> Path:
    """``study.json``: what defines the study, its counts, best trial and every trial."""
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    doc = {"kind": "tune", "study": settings.name, "storage": settings.storage, "folds": settings.folds,
           "objective": study.user_attrs.get("objective"), "space": settings.space.spec(),
           "fit_args": settings.fit_args, "pruner": settings.pruner, "counts": counts(study),
           "span_seconds": round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None,
           "best": trial_summary(best, settings.space) if best else None,
           "trials": [trial_summary(t, settings.space) for t in trials]}
    path = settings.study_dir / "study.json"
    write_json_atomic(path, doc)
    return path


def status_lines(settings: object, study: optuna.Study, target: int | None = None) -> list[str]:
    """Trials done, running, pruned, failed (and waiting to be run again); the best so far."""
    n = counts(study)
    finished = n["complete"] + n["pruned"]
    lines = [f"tune {settings.name}: {finished}{f' of {target}' if target else ''} trials finished "
             f"({n['complete']} complete, {n['pruned']} pruned), {n['running']} running, {n['fail']} failed, "
             f"{n['waiting']} queued; storage {settings.storage}"]
    for trial in study.get_trials(deepcopy=False):
        summary = trial_summary(trial, settings.space)
        folds = " ".join(f"{k}:{v:.3f}" for k, v in sorted(summary["fold_val_accuracy"].items()))
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        extra = f" ({summary['pruned_at']})" if summary["pruned_at"] and trial.state == TrialState.PRUNED else ""
        base = " (the base config)" if summary["baseline"] else ""
        lines.append(f"  trial {trial.number:3d} {trial.state.name.lower():8s} {value:>6s}  folds {folds or '-'}"
                     f"{extra}{base}  {json.dumps(summary['params'])}")
    best = best_trial(study)
    if best is not None:
        values = json.dumps(settings.space.values(best.params))
        lines.append(f"tune {settings.name}: best so far trial {best.number}: validation accuracy {best.value:.4f} "
                     f"over folds {', '.join(map(str, settings.folds))}: {values}")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("baseline"):
            lines.append(f"tune {settings.name}: the base config as it is (trial {trial.number}): validation accuracy "
                         f"{trial.value:.4f}")
    return lines

