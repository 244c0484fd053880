"""What a fold was trained with, and when two records differ (``training.settings``): settings
compared as resolved where ``auto`` let the machine choose, a sweep's folds that must agree before
they are aggregated under one config, and the sweeps committed in ``bench/sweeps`` (records
written before the resolved settings were) still aggregating with no changed setting reported."""

import json
import shutil
from pathlib import Path

import pytest

from esc50_lightning.cli import main
from esc50_lightning.errors import ESC50Error
from esc50_lightning.training.settings import resolution
from esc50_lightning.training.sweep import FoldDir, aggregate, collect, setting_differences

BENCH_SWEEPS = Path(__file__).resolve().parents[1] / "bench" / "sweeps"
NAMES = ["dog", "rain"]


def config(**trainer) -> dict:
    return {"seed_everything": 0, "trainer": {"precision": "auto", "max_epochs": 2, **trainer},
            "model": {"net": {"class_path": "esc50_lightning.models.Conv1D", "init_args": {}}, "compile": "auto",
                      "channels_last": "auto"},
            "data": {"fold": 1, "feature": "log_mel"}}


def ran(precision: str = "32-true", compile_: bool = False, channels_last: bool | None = None) -> dict:
    return {"trainer.precision": precision, "model.compile": compile_, "model.channels_last": channels_last}


def write_fold(sweep_dir: Path, fold: int, recorded: dict, resolved: dict | None = None) -> None:
    fold_dir = FoldDir(sweep_dir, fold)
    fold_dir.path.mkdir(parents=True)
    result = {"fold": fold, "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "train_seconds": 1.0,
              "epochs": 2, "confusion_matrix": [[1, 1], [0, 2]], "class_names": NAMES,
              "config": {**recorded, "data": {**recorded["data"], "fold": fold}}, "dataset": {"clips": 40}}
    if resolved is not None:
        result["resolved"] = resolved
    fold_dir.result_file.write_text(json.dumps(result))


def test_auto_is_compared_as_it_resolved():
    trained, trained_ran = config(), ran("32-true")  # started in fp32 on a CPU without native bf16
    assert setting_differences(trained, config(), trained_ran, ran("bf16-mixed")) == [
        "trainer.precision 'auto' (ran as '32-true') -> 'auto' (runs as 'bf16-mixed' here)"]
    pinned = config(precision="32-true")
    assert setting_differences(trained, pinned, trained_ran, resolution(pinned)) == []  # what auto chose, pinned
    assert setting_differences(trained, config(), trained_ran, ran("32-true")) == []
    assert setting_differences(trained, config(max_epochs=3), trained_ran, ran()) == ["trainer.max_epochs 2 -> 3"]


def test_records_without_resolved_settings_compare_what_they_hold():
    """Written before the resolved settings were: an explicit value is its own resolution, the
    precision a result reports (``precision_used``) is auto's, and an ``auto`` with neither is
    compared as written."""
    old = {**config(precision="bf16-mixed"), "model": {**config()["model"], "compile": True}}
    old["model"].pop("channels_last")  # not a setting yet
    now = {**config(), "model": {**config()["model"], "compile": True}}
    assert setting_differences(old, now, resolution(old), ran("bf16-mixed", True, True)) == []
    assert resolution(config(precision="bf16")) == {"trainer.precision": "bf16-mixed"}  # Lightning's alias
    assert resolution(config(), {"precision_used": "32-true"})["trainer.precision"] == "32-true"
    assert setting_differences(config(), config(precision="32-true"), resolution(config()),
                               resolution(config(precision="32-true"))) == ["trainer.precision 'auto' -> '32-true'"]


def test_folds_recorded_with_other_settings_are_never_aggregated_under_one_config(tmp_path):
    write_fold(tmp_path, 1, config(), ran("32-true"))
    write_fold(tmp_path, 2, config(max_epochs=3), ran("32-true"))
    with pytest.raises(ESC50Error) as err:
        aggregate("tiny", tmp_path, [1, 2])
    (line,) = str(err.value).splitlines()
    assert line.startswith("fold 2 in ") and "trainer.max_epochs 2 -> 3" in line and "--restart" in line
    assert not (tmp_path / "results.json").exists()


def test_folds_whose_auto_resolved_differently_aggregate_each_with_what_it_ran(tmp_path):
    write_fold(tmp_path, 1, config(), ran("32-true"))
    write_fold(tmp_path, 2, config(precision="32-true"), ran("32-true"))  # pinned to what fold 1's auto chose
    write_fold(tmp_path, 3, config(), ran("bf16-mixed"))  # on another machine
    result = collect("tiny", tmp_path, [1, 2, 3])
    assert result["resolved"] == {"1": ran("32-true"), "2": ran("32-true"), "3": ran("bf16-mixed")}
    write_fold(tmp_path, 4, config(precision="bf16-mixed"), ran("bf16-mixed"))
    with pytest.raises(ESC50Error, match=r"^fold 4 in .*trainer.precision 'auto' \(ran as '32-true'\) -> 'bf16-mixed'"):
        collect("tiny", tmp_path, [1, 4])


def committed_sweeps() -> list[Path]:
    return sorted({p.parent.parent for p in BENCH_SWEEPS.glob("**/fold[1-5]/result.json")})


@pytest.mark.parametrize("sweep", committed_sweeps(), ids=lambda p: str(p.relative_to(BENCH_SWEEPS)))
def test_the_committed_sweeps_aggregate_and_report_no_changed_setting(sweep, tmp_path, capsys):
    copy = tmp_path / sweep.name
    for record in [*sweep.glob("fold[1-5]/result.json"), *sweep.glob("fold[1-5]/config.yaml")]:
        (copy / record.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, copy / record.parent.name / record.name)
    folds = sorted(int(p.parent.name[4:]) for p in copy.glob("fold*/result.json"))
    result = collect(sweep.name, copy, folds)
    assert [f["fold"] for f in result["runs"][0]["folds"]] == folds
    main(["sweep", "--status", "--sweep_dir", str(copy), "--folds", *map(str, folds)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(folds) and all(": done: test accuracy " in line for line in lines)
    assert not any("other settings" in line for line in lines)


@pytest.mark.parametrize("capability, compiles", [((6, 0), False), ((9, 0), True)])
def test_what_a_gpu_run_resolves_is_asked_without_starting_cuda(capability, compiles, monkeypatch):
    """A fold compares what it would run with before its Trainer starts, in the process a
    fork-based strategy (``ddp_fork``) forks from: on a GPU ``compile: auto`` is read from NVML
    (``hardware.detect``), never from ``torch.cuda``, which would start CUDA there."""
    import functools

    import torch

    import esc50_lightning.hardware as hardware
    import esc50_lightning.models.hardware_switches as switches
    from esc50_lightning.models import CNN, AudioClassifier

    model = AudioClassifier(functools.partial(CNN, channels=[4, 8]), input_shape=(16, 20), num_classes=3,
                            compile="auto", channels_last="auto")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: pytest.fail("asked torch.cuda"))
    monkeypatch.setattr(switches, "detect", lambda accelerator: hardware.Hardware("cuda", "a GPU", True, {},
                                                                                  capability))
    assert model.hardware_switches(torch.device("cuda")) == {"compile": compiles, "channels_last": True}
