import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from esc50_lightning.cli import main
from esc50_lightning.training.sweep import FoldDir

from .conftest import FAST_DATA

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fast_args(root, cache, config="conv1d.yaml", epochs=2):
    data = [f"--data.{k}={v}" for k, v in FAST_DATA.items()]
    return [f"--config={CONFIGS / config}", f"--data.root={root}", f"--data.cache_dir={cache}", *data,
            f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.precision=32-true", "--model.compile=false"]


@pytest.mark.parametrize("config", ["mlp.yaml", "conv1d.yaml", "cnn.yaml", "cnn_fast.yaml"])
def test_fit_end_to_end(tiny_root, tmp_path, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", config)])
    runs = list((tmp_path / "lightning_logs").glob("version_*"))
    assert len(runs) == 1
    assert list(runs[0].glob("events.out.tfevents.*"))
    assert (runs[0] / "checkpoints" / "last.ckpt").exists()
    assert (runs[0] / "config.yaml").exists()


def test_fit_resumes_last_checkpoint(tiny_root, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1)])
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=2), "--ckpt_path=last"])
    runs = list((tmp_path / "lightning_logs").glob("version_*"))
    assert [r.name for r in runs] == ["version_0"]  # the resumed run continues in its own folder
    last = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1 and last["global_step"] == 2 * 3  # two epochs of 3 batches in all


def no_native_bf16(monkeypatch, native: bool) -> None:
    """This machine as a CPU with (or without) native bf16: what ``precision: auto`` resolves to."""
    import esc50_lightning.hardware as hardware

    flags = {"avx2": True, "avx512": native, "avx512_bf16": native, "amx": False}
    monkeypatch.setattr(hardware, "cpu_flags", lambda: dict(flags))


def test_fit_resume_with_other_settings_is_refused_in_one_line(tiny_root, tmp_path, monkeypatch, capsys):
    """``fit --ckpt_path last`` checks the run it resumes as ``sweep`` checks a fold: a changed
    setting is refused, each named, in one line (how long it trains, ``max_epochs``, may grow);
    ``auto`` is compared as it resolved, so the same command on a machine where it would resolve
    otherwise (fp32 before, bf16 now) is refused too, and pinning what it ran with resumes."""
    import torch

    monkeypatch.chdir(tmp_path)
    base = [*fast_args(tiny_root, tmp_path / "cache", epochs=1), "--trainer.precision=auto"]
    no_native_bf16(monkeypatch, native=False)
    main(["fit", *base])
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    stamp = last.stat().st_mtime_ns
    refused = {("--model.optimizer.init_args.lr=0.0001", "--model.mixup_alpha=0.3"):
               "model.optimizer.init_args.lr 0.002 -> 0.0001; model.mixup_alpha 0.2 -> 0.3",
               (): "trainer.precision 'auto' (ran as '32-true') -> 'auto' (runs as 'bf16-mixed' here)"}
    for changed, named in refused.items():
        no_native_bf16(monkeypatch, native=not changed)  # the same command, on a machine with native bf16
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *base, *changed, "--ckpt_path=last"])
        assert exit_.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.startswith(f"esc50-lightning: error: --ckpt_path last: {last} was trained with other settings "
                               f"({named})")
    assert last.stat().st_mtime_ns == stamp  # nothing trained
    main(["fit", *base, "--trainer.precision=32-true", "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert torch.load(last, weights_only=False)["epoch"] == 1  # resumed: two epochs in all, in fp32 as it began


def test_validate_without_logger_leaves_no_config_in_working_dir(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1)])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    main(["validate", *fast_args(tiny_root, tmp_path / "cache"), "--trainer.logger=false", f"--ckpt_path={ckpt}"])
    assert not (tmp_path / "config.yaml").exists()
    assert (tmp_path / "lightning_logs" / "version_0" / "config.yaml").exists()  # fit's copy stays


def test_ckpt_path_keeps_checkpoint_hparams_unless_named_on_the_command_line(tiny_root, tmp_path, monkeypatch):
    """``--ckpt_path`` rebuilds the model from the checkpoint's hyper-parameters; a ``--model.NAME``
    given on the command line still wins (Lightning alone would drop it silently)."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--model.tta_shifts=2",
          "--model.mixup_alpha=0.1"])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    base = ["test", *fast_args(tiny_root, tmp_path / "cache"), "--trainer.logger=false", f"--ckpt_path={ckpt}"]
    assert ESC50CLI(args=base).model.hparams.tta_shifts == 2
    named = ESC50CLI(args=[*base, "--model.tta_shifts", "4"]).model.hparams
    assert named.tta_shifts == 4 and named.mixup_alpha == 0.1  # the rest still from the checkpoint


def test_test_needs_only_the_checkpoint(tiny_root, tmp_path, monkeypatch):
    """``test --ckpt_path F`` with no ``--config``: the network, its settings, the test fold and
    the input settings all come from F."""
    from esc50_lightning.training.lightning_cli import ESC50CLI

    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--data.fold=2", "--model.tta_shifts=2"])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = ESC50CLI(args=["test", f"--data.root={tiny_root}", f"--data.cache_dir={tmp_path / 'cache'}",
                             "--data.allow_subset=true", "--trainer.logger=false", "--trainer.precision=32-true",
                             "--trainer.enable_progress_bar=false", "--ckpt_path", str(ckpt)])
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]  # the fit's folder: no matter
    assert type(cli.model.net).__name__ == "Conv1D" and cli.model.hparams.tta_shifts == 2
    assert cli.datamodule.hparams.fold == 2
    assert cli.datamodule.hparams.sample_rate == FAST_DATA["sample_rate"]


def test_resume_without_checkpoint_is_clear(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--ckpt_path=last"])
    assert "no */checkpoints/last.ckpt" in capsys.readouterr().err


def test_sweep_writes_json_and_skips_finished_folds(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep.json"
    args = ["sweep", *fast_args(tiny_root, tmp_path / "cache"), "--folds", "1", "2", "--results", str(out)]
    main(args)
    result = json.loads(out.read_text())
    assert result["kind"] == "sweep"
    (run,) = result["runs"]
    assert [f["fold"] for f in run["folds"]] == [1, 2]
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0 <= run["mean"][key] <= 1 and key in run["std"]
    assert result["dataset"]["clips"] == 40
    assert result["config"]["data"]["feature"] == "log_mel"
    (machine,) = result["machines"]  # both folds trained here: one machine, with its CPU flags
    assert {"cpu", "cpu_flags", "cpu_native_bf16", "device"} <= machine.keys()
    fold_result = json.loads((tmp_path / "lightning_logs" / "sweeps" / "conv1d" / "fold1" / "result.json").read_text())
    assert fold_result["cpu_steal_share"] is None or 0 <= fold_result["cpu_steal_share"] <= 1  # None off Linux
    assert sum(map(sum, result["confusion_matrix"])) == 16  # 2 test folds x 8 clips
    correct = sum(result["confusion_matrix"][i][i] for i in range(50))
    assert run["mean"]["accuracy"] == correct / 16  # exact counts, folds of equal size
    assert out.with_suffix(".md").read_text().startswith("| run |")
    fold_dirs = sorted((tmp_path / "lightning_logs" / "sweeps" / "conv1d").glob("fold*"))
    assert [d.name for d in fold_dirs] == ["fold1", "fold2"]
    stamps = [p.stat().st_mtime_ns for p in (tmp_path / "lightning_logs").rglob("*.ckpt")]

    import esc50_lightning.training.executors as executors

    monkeypatch.setattr(executors, "run_fold", lambda *a: pytest.fail("trained a finished fold again"))
    capsys.readouterr()
    main(args)
    printed = capsys.readouterr()
    skipped = [line for line in printed.out.splitlines() if " skipped, " in line]
    assert len(skipped) == 2 and all("done: test accuracy" in line and "after 2 epochs" in line for line in skipped)
    assert "other settings" not in printed.err  # the same command: nothing to report
    written = out.stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_:  # finished folds of another recipe: refused, never labelled as this one
        main([*args, "--trainer.max_epochs=3", "--model.mixup_alpha=0.3"])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("esc50-lightning: error: sweep conv1d: fold 1 was trained with other settings than this "
                           "run's (trainer.max_epochs 2 -> 3; model.mixup_alpha 0.2 -> 0.3), and fold 2 too")
    assert "--restart" in line
    assert stamps == [p.stat().st_mtime_ns for p in (tmp_path / "lightning_logs").rglob("*.ckpt")]
    assert out.stat().st_mtime_ns == written and json.loads(out.read_text())["runs"] == result["runs"]
    main([*args, "--status", "--trainer.max_epochs=3"])  # trains nothing; says which folds a sweep would refuse
    status = capsys.readouterr().out.strip().splitlines()
    assert len(status) == 2 and all("trained with other settings than this run's (trainer.max_epochs 2 -> 3)" in line
                                    for line in status)


def test_sweep_resumes_interrupted_fold_and_reports_status(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["sweep", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--folds", "1"]
    main(base)
    fold = tmp_path / "lightning_logs" / "sweeps" / "conv1d" / "fold1"
    (fold / "result.json").unlink()  # as if the run died after its last checkpoint
    saved = FoldDir.of(fold).checkpoint_progress()[1]  # the seconds trained before it died
    capsys.readouterr()
    main([*base, "--folds", "1", "2", "--status"])  # reports and trains nothing
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("sweep conv1d: fold 1: 1 of 1 epochs trained (") and "resumes from" in lines[0]
    assert lines[1] == "sweep conv1d: fold 2: not started"
    assert not (fold.parent / "fold2").exists()
    with pytest.raises(SystemExit):  # a changed setting is refused in one line, nothing trained
        main([*base, "--trainer.max_epochs=2"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("esc50-lightning")]
    assert err == [f"esc50-lightning: error: fold 1 in {fold.relative_to(tmp_path)} was trained with other settings "
                   "(trainer.max_epochs 1 -> 2); add --restart to train it afresh, or use a new --sweep_dir"]
    main(base)  # the same settings: resumed, tested from the checkpoint
    result = json.loads((fold / "result.json").read_text())
    assert result["epochs"] == 1 and result["resumed"]
    assert result["train_seconds"] >= round(saved, 1)  # the first part counts too
    capsys.readouterr()
    main([*base, "--status"])
    assert capsys.readouterr().out.startswith(f"sweep conv1d: fold 1: done: test accuracy {result['accuracy']:.4f}")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "esc50_lightning", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_unknown_config_key_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  net:\n    class_path: esc50_lightning.models.MLP\ndata:\n  sampel_rate: 8000\n")
    proc = run_cli("fit", "--config", str(bad), cwd=tmp_path)
    assert proc.returncode != 0
    assert "sampel_rate" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--trainer.callbacks+=esc50_lightning.training.ema.WarmupEMA", "--trainer.callbacks.decay=1.5"],
     "WarmupEMA: decay must be in (0, 1), got 1.5"),
    (["--model.net.init_args.dropout=-1"], "dropout probability has to be between 0 and 1"),
])
def test_rejected_argument_is_one_clear_error(tiny_root, tmp_path, args, message):
    proc = run_cli("fit", *fast_args(tiny_root, tmp_path / "c", epochs=1), *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("esc50-lightning: error: invalid configuration: ")
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_data_root_is_one_clear_error(tree, tmp_path):
    (tree / "audio" / sorted(p.name for p in (tree / "audio").iterdir())[0]).write_bytes(b"junk")
    proc = run_cli("fit", *fast_args(tree, tmp_path / "c", epochs=1), "--data.clip_seconds=1.0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "cannot decode audio" in proc.stderr.strip().splitlines()[-1]


def test_lightning_optimizer_and_scheduler_arguments_override(tiny_root, tmp_path, monkeypatch):
    """LightningCLI's own ``--optimizer`` / ``--lr_scheduler`` replace the model's AdamW + cosine."""
    import torch

    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), "--optimizer=torch.optim.SGD",
          "--optimizer.lr=0.05", "--optimizer.momentum=0.9", "--lr_scheduler=torch.optim.lr_scheduler.StepLR",
          "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"])
    last = torch.load(next(tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt")), weights_only=False)
    (opt,) = last["optimizer_states"]
    assert opt["param_groups"][0]["momentum"] == 0.9 and "betas" not in opt["param_groups"][0]
    (sched,) = last["lr_schedulers"]
    assert sched["step_size"] == 1 and sched["_last_lr"] == [0.025]  # one epoch: lr halved once


BAD_VALUE = {"sweep": ["--jobs", "two"], "ensemble": ["a", "b", "--tta_shifts", "two"],
             "classify": ["--ckpt", "a.ckpt", "x.wav", "--top-k", "two"],
             "export": ["--ckpt", "a.ckpt", "--out", "m.pt", "--format", "tflite"], "classical": ["--n_jobs", "two"],
             "serve": ["--ckpt", "a.ckpt", "--port", "two"]}


@pytest.mark.parametrize("command", list(BAD_VALUE))
def test_every_command_has_the_same_help_config_files_and_error_lines(command, capsys):
    """The commands of our own parse as ``classical`` and LightningCLI do (jsonargparse): the same
    ``--help``, ``--config`` files (``--print_config`` writes one) and error lines."""
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: esc50-lightning {command} ") and "--config CONFIG" in text
    # sweep's --config is fit's (the recipe each fold trains); its own options stay on the command line
    assert ("--print_config" in text) != (command == "sweep")
    with pytest.raises(SystemExit) as exit_:
        main([command, *BAD_VALUE[command]])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"tip: For details of accepted options run: esc50-lightning {command} --help" in err
    assert any(line.startswith("error: Parser key ") for line in err.splitlines()) and "Traceback" not in err


def test_sweep_options_parse_apart_from_the_fit_options_it_passes_on():
    from esc50_lightning.commands.sweep import parse

    args, rest = parse(["--config", "c.yaml", "--folds", "3", "1", "--trainer.max_epochs", "2", "--jobs=2", "--status",
                        "--results", "r.json", "--model.net.init_args.channels=[8, 8]", "--restart"])
    assert (args.folds, args.jobs, args.status, args.restart, args.results) == ([1, 3], 2, True, True, "r.json")
    assert rest == ["--config", "c.yaml", "--trainer.max_epochs", "2", "--model.net.init_args.channels=[8, 8]"]


def test_help_lists_every_command_in_the_order_of_the_study(capsys):
    main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ")]
    assert listed == ["data", "plots", "classical", "fit", "validate", "test", "predict", "sweep", "tune", "ensemble",
                      "classify", "export", "embed", "serve"]
    assert all(len(line) <= 120 for line in lines)  # one line each
    with pytest.raises(SystemExit):
        main(["trian"])
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_a_config_optimizer_gets_no_setting_it_does_not_write(config, capsys):
    """Naming another optimizer class in a config keeps only what the config writes and that class's
    own defaults: jsonargparse would otherwise carry the default optimizer's (AdamW's) settings over,
    as it once gave the PANNs recipes Adam with weight decay 0.01."""
    import importlib
    import inspect

    import yaml

    written = (yaml.safe_load((CONFIGS / config).read_text()).get("model") or {}).get("optimizer")
    if not isinstance(written, dict):
        pytest.skip(f"{config} keeps the default optimizer")
    with pytest.raises(SystemExit):
        main(["fit", f"--config={CONFIGS / config}", "--print_config"])
    resolved = yaml.safe_load(capsys.readouterr().out)["model"]["optimizer"]
    module, name = written["class_path"].rsplit(".", 1)
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    mine = written.get("init_args") or {}
    carried = {k: v for k, v in resolved["init_args"].items() if k not in mine and k in defaults
               and v != defaults[k] and not (isinstance(v, list) and tuple(v) == defaults[k])}
    assert not carried, f"{config}: {carried} resolved, neither written nor {name}'s default"
