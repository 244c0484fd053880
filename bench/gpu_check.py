"""The GPU path in one command: what the hardware policy chose and why, and what each GPU
choice costs or gains, measured on the real data in at most 8 minutes on one CUDA GPU.

    ESC50_ROOT=/path/to/ESC-50 python bench/gpu_check.py   # -> bench/results/gpu_check.json

Sections, each in a fresh process of its own (a CUDA context never leaks into the next, and the
compiled run starts from empty compiler caches, as on a fresh machine):

- ``policy``: the devices NVML lists, the precision, layout and compilation ``auto`` picks and
  why, and whether building the Trainer created a CUDA context (it must not: Lightning could not
  fork its workers then);
- ``cnn_eager`` / ``cnn_compiled``: seconds per CNN epoch (``configs/cnn.yaml``) eager and
  compiled, a few epochs each; the first epoch's excess over the others is the warm-up, and
  compiled minus eager warm-up is what compiling took; the graphs dynamo compiled;
- ``weight_averaging``: milliseconds per step of ``WarmupEMA``'s update with the average on the
  device, against the average kept on the CPU (what Lightning's setup did before), beside one
  AdamW step;
- ``input_resident`` / ``input_pinned``: Conv1D epochs (the fastest network, where the input path
  shows most) with every clip's features on the GPU against pinned host copies
  (``--data.on_device``);
- ``fold_gpu``, ``fold_cpu``: one short Conv1D fold (fit, validation, test) on the GPU and the
  same fold on the CPU beside it;
- ``jobs2``: folds 1 and 2 at once on one GPU (``sweep --jobs 2 --folds_per_gpu 2``);
- ``ddp`` / ``ddp_fork``: the fold with ``--trainer.devices 1`` under each DDP launcher.

A section that fails or runs out of time is recorded as such, and the rest still run; the
whole check stops starting sections when its budget (``--budget_s``) is spent. The verdict on
``compile: auto`` for CUDA is written beside the figures (``verdict``): compiled epochs faster,
and the compilation earned back within the CNN config's 160 epochs.

``--accelerator cpu`` runs the same sections small (a few batches an epoch, the compiled run
skipped) on the CPU, so CI keeps the script working; with ``--overrides`` and ``--root`` it runs
on any tree (the tests' synthetic one).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIGS = REPO / "configs"
sys.path.insert(0, str(BENCH))

CNN_EPOCHS_IN_CONFIG = 160  # configs/cnn.yaml: what a compilation has to pay for itself within


# ----- the sections, each run in a process of its own -----
def section_policy(params: dict) -> dict:
    """What ``auto`` picks here, read without creating a CUDA context, and proof of that."""
    import torch

    from esc50_lightning import hardware
    from esc50_lightning.models.nets import MLP
    from esc50_lightning.training import ESC50Trainer

    accelerator = params["accelerator"]
    hw = hardware.detect(accelerator)
    precision, why = hardware.choose_precision(hw)
    mlp_precision, mlp_why = hardware.choose_precision(hw, MLP(8, 8, 2))
    trainer = ESC50Trainer(accelerator=accelerator, logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    out = {
        "hardware": hw.describe(),
        "device": hw.device,
        "nvml_devices": [vars(d) | {"capability": list(d.capability)} for d in hardware.nvml_devices() or []],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "precision": {"auto": precision, "why": why, "mlp": mlp_precision, "mlp_why": mlp_why,
                      "trainer": str(trainer.precision)},
        "channels_last": hardware.channels_last_pays(hw.device),
        "cuda_context_after_building_the_trainer": torch.cuda.is_initialized(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
    }
    if hw.device == "cuda":
        capability = hw.capability
        triton = capability is not None and capability >= hardware.TRITON_MIN_CAPABILITY
        out["compile"] = {"auto": triton, "why": "compute capability "
                          f"{'.'.join(map(str, capability)) if capability else 'unknown'}; Triton needs "
                          f"{'.'.join(map(str, hardware.TRITON_MIN_CAPABILITY))} (whether it pays: cnn_* below)"}
    else:
        out["compile"] = {"auto": hardware.compile_pays(hw.device),
                          "why": hardware.compile_refusal(hw.device) or "a C++ compiler is found"}
    return out


def training_args(params: dict, config: str) -> list[str]:
    return [f"--config={CONFIGS / config}.yaml", f"--trainer.accelerator={params['accelerator']}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--data.cache_dir={params['cache_dir']}", *params["overrides"]]


def section_epochs(params: dict) -> dict:
    """Seconds per training epoch of ``params["config"]`` (no validation), the first apart."""
    import torch
    from train import EpochTimer

    from esc50_lightning.training import ESC50CLI

    with tempfile.TemporaryDirectory() as work:
        cli = ESC50CLI(args=[*training_args(params, params["config"]), f"--trainer.max_epochs={params['epochs']}",
                             "--data.val_strategy=none", f"--trainer.default_root_dir={work}", "--trainer.logger=false",
                             "--trainer.enable_checkpointing=false", *params.get("extra", [])], run=False)
        timer = EpochTimer()
        cli.trainer.callbacks.append(timer)
        cli.datamodule.load_all()  # the cache is warm before the clock starts
        timer.fit_called = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    epochs = [round(e[0], 3) for e in timer.epochs]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    out = {"config": params["config"], "extra": params.get("extra", []), "precision": str(cli.trainer.precision),
           "compiled": bool(getattr(cli.model, "compiled", False)), "epoch_seconds": epochs,
           "seconds_per_epoch": round(steady, 3), "first_epoch_excess_seconds": round(epochs[0] - steady, 3),
           "first_batch_after_fit_seconds": round(timer.first_batch, 3),
           "clips_per_second": round(timer.epochs[-1][2] / steady, 1) if steady else None,
           "inputs_on_device": cli.datamodule.batch_tensors()[0].device.type != "cpu",
           "train_batches_per_epoch": cli.trainer.num_training_batches}
    if out["compiled"]:
        from torch._dynamo.utils import counters

        out["dynamo_stats"] = {k: int(v) for k, v in counters["stats"].items()}
    if torch.cuda.is_available() and params["accelerator"] != "cpu":
        out["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def section_weight_averaging(params: dict) -> dict:
    """Milliseconds per step of the weight-averaging update, on the device and on the CPU."""
    import torch
    from torch.optim.swa_utils import AveragedModel

    from esc50_lightning.models.nets import CNN
    from esc50_lightning.training.ema import DeviceAveragedModel, WarmupEMA

    device = torch.device("cuda" if params["accelerator"] != "cpu" and torch.cuda.is_available() else "cpu")
    steps = params["steps"]
    net = CNN(64, 251, 50, channels=(32, 64, 128, 256)).to(device)
    ema = WarmupEMA(decay=0.999)

    def per_step(update, n: int) -> float:
        update()  # the first update copies
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return round(1000 * (time.perf_counter() - start) / n, 3)

    on_device = DeviceAveragedModel(net, ema.average, device=device)
    on_cpu = AveragedModel(net, device=torch.device("cpu"), multi_avg_fn=ema.average, use_buffers=True)
    optimizer = torch.optim.AdamW(net.parameters())
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    return {"device": str(device), "parameters": sum(p.numel() for p in net.parameters()),
            "ms_per_step_average_on_device": per_step(lambda: on_device.update_parameters(net), steps),
            "ms_per_step_average_on_cpu": per_step(lambda: on_cpu.update_parameters(net), max(5, steps // 10)),
            "ms_per_adamw_step": per_step(optimizer.step, steps)}


SECTIONS = {"policy": section_policy, "epochs": section_epochs, "weight_averaging": section_weight_averaging}


def run_section_here(name: str, params: dict, out: Path) -> None:
    out.write_text(json.dumps(SECTIONS[name](params)))


# ----- the driver -----
class Check:
    """Runs sections against one deadline; each result (or why there is none) lands in ``results``.
    ``in_process`` (the small CPU form): sections and sweeps run in this process, which saves
    a Python start and the imports per section; a GPU run gives each a fresh process."""

    def __init__(self, budget_s: float, env: dict, in_process: bool = False) -> None:
        self.deadline = time.monotonic() + budget_s
        self.env, self.results, self.in_process = env, {}, in_process

    def here(self, key: str, fn) -> object:
        """``fn()`` in this process, timed; a failure is recorded like a failed process's."""
        if self.left() < 10:
            self.results[key] = {"skipped": "the check's time budget was spent"}
            print(f"{key}: skipped (budget spent)", flush=True)
            return None
        start = time.perf_counter()
        try:
            value = fn()
        except (Exception, SystemExit) as err:  # noqa: BLE001 - recorded, and the other sections still run
            line = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            self.results[key] = {"error": f"{type(err).__name__}: {line}"}
            print(f"{key}: failed ({line})", flush=True)
            return None
        wall = round(time.perf_counter() - start, 1)
        print(f"{key}: done in {wall} s", flush=True)
        return value, wall

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, key: str, command: list[str], limit_s: float) -> subprocess.CompletedProcess | None:
        timeout = min(limit_s, self.left())
        if timeout < 10:
            self.results[key] = {"skipped": "the check's time budget was spent"}
            print(f"{key}: skipped (budget spent)", flush=True)
            return None
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.results[key] = {"error": f"timed out after {timeout:.0f} s"}
            print(f"{key}: timed out after {timeout:.0f} s", flush=True)
            return None
        wall = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()
            self.results[key] = {"error": f"exit status {proc.returncode}: {lines[-1]}", "wall_seconds": wall,
                                 "output_tail": "\n".join(lines[-15:])}
            print(f"{key}: failed ({lines[-1]})", flush=True)
            return None
        proc.wall_seconds = wall
        return proc

    def section(self, key: str, name: str, params: dict, limit_s: float) -> None:
        if self.in_process:
            params.pop("env", None)
            done = self.here(key, lambda: SECTIONS[name](params))
            if done is not None:
                self.results[key] = {**done[0], "wall_seconds": done[1]}
            return
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            env_extra = params.pop("env", {})
            self.env, saved = {**self.env, **env_extra}, self.env
            try:
                proc = self.run(key, [sys.executable, __file__, "--run_section", name, "--params", json.dumps(params),
                                      "--section_out", str(out)], limit_s)
            finally:
                self.env = saved
            if proc is not None:
                self.results[key] = {**json.loads(out.read_text()), "wall_seconds": proc.wall_seconds}
                print(f"{key}: done in {proc.wall_seconds} s", flush=True)

    def sweep(self, key: str, args: list[str], folds: list[int], limit_s: float, work: Path,
              fresh_process: bool = False) -> None:
        """A ``sweep`` of ``folds`` into its own folder; ``fresh_process``: never in this one (a
        launcher that forks must not fork a process that has trained already)."""
        sweep_dir = work / key
        command = ["sweep", *args, "--folds", *map(str, folds), "--sweep_dir", str(sweep_dir)]
        in_process = self.in_process and not fresh_process
        if in_process:
            from esc50_lightning.cli import main as cli_main

            done = self.here(key, lambda: cli_main(command))
            if done is None:
                return
            wall = done[1]
        else:
            proc = self.run(key, [sys.executable, "-m", "esc50_lightning", *command], limit_s)
            if proc is None:
                return
            wall = proc.wall_seconds
        folds_out = []
        for fold in folds:
            result = json.loads((sweep_dir / f"fold{fold}" / "result.json").read_text())
            folds_out.append({k: result.get(k) for k in ("fold", "accuracy", "train_seconds", "epochs", "devices",
                                                          "precision_used")})
        self.results[key] = {"wall_seconds": wall, "folds": folds_out}
        if not in_process:
            print(f"{key}: done in {wall} s", flush=True)


def verdict(results: dict) -> dict:
    """Whether ``compile: auto`` pays on this GPU, from the eager and compiled CNN epochs."""
    eager, compiled = results.get("cnn_eager", {}), results.get("cnn_compiled", {})
    if "seconds_per_epoch" not in eager or "seconds_per_epoch" not in compiled:
        return {"compile_pays": None, "why": "not measured (the eager or the compiled run is missing)"}
    saved = eager["seconds_per_epoch"] - compiled["seconds_per_epoch"]
    compiling = max(0.0, compiled["first_epoch_excess_seconds"] - eager["first_epoch_excess_seconds"])
    pays = saved > 0 and compiling < CNN_EPOCHS_IN_CONFIG * saved
    return {"compile_pays": pays, "speedup": round(eager["seconds_per_epoch"] / compiled["seconds_per_epoch"], 3),
            "seconds_saved_per_epoch": round(saved, 3), "compile_seconds": round(compiling, 1),
            "why": (f"compiled epochs {'faster' if saved > 0 else 'not faster'} by {saved:.3f} s; compiling took "
                    f"{compiling:.1f} s, {'earned back' if pays else 'not earned back'} within "
                    f"{CNN_EPOCHS_IN_CONFIG} epochs")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--root", help="the dataset root (default: $ESC50_ROOT)")
    parser.add_argument("--overrides", default="", help="options for every run, one string (e.g. smaller features)")
    parser.add_argument("--budget_s", type=float, help="stop starting sections after this long (default: 470 on "
                                                       "CUDA, 300 on the CPU)")
    parser.add_argument("--out", help="the result file (default: bench/results/gpu_check.json)")
    parser.add_argument("--fresh_processes", action="store_true",
                        help="the small CPU form too gives each section a process of its own, as on a GPU")
    parser.add_argument("--run_section", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--section_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_section:
        run_section_here(args.run_section, json.loads(args.params), Path(args.section_out))
        return

    from common import data_root, write

    if args.root:
        os.environ["ESC50_ROOT"] = str(Path(args.root).resolve())
    data_root()
    small = args.accelerator == "cpu"
    overrides = shlex.split(args.overrides)
    if small:  # a few batches an epoch: the code paths, quickly
        overrides += ["--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
                      "--trainer.limit_test_batches=2"]
    budget = args.budget_s or (300.0 if small else 470.0)
    epochs = 2 if small else 4
    fold_epochs = 1 if small else 5
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        check = Check(budget, env, in_process=small and not args.fresh_processes)
        common = {"accelerator": args.accelerator, "cache_dir": str(work / "cache"), "overrides": overrides}
        check.section("policy", "policy", {"accelerator": args.accelerator}, 60)
        # the CNN first eagerly (it also computes the features into the shared cache), then compiled from cold caches
        check.section("cnn_eager", "epochs", {**common, "config": "cnn", "epochs": epochs,
                                              "extra": ["--model.compile=false"]}, 150)
        if small:
            check.results["cnn_compiled"] = {"skipped": "the small form does not compile (inductor's C++ build "
                                                        "takes longer than a CI run should)"}
        else:
            check.section("cnn_compiled", "epochs", {**common, "config": "cnn", "epochs": epochs,
                                                     "extra": ["--model.compile=true"],
                                                     "env": {"TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"),
                                                             "TRITON_CACHE_DIR": str(work / "triton")}}, 240)
        check.section("weight_averaging", "weight_averaging", {"accelerator": args.accelerator,
                                                                "steps": 20 if small else 200}, 60)
        for key, resident in (("input_resident", "true"), ("input_pinned", "false")):
            if small and key == "input_pinned":
                check.results[key] = {"skipped": "on a CPU batches are sliced where the clips are: nothing to pin"}
                continue
            check.section(key, "epochs", {**common, "config": "conv1d", "epochs": epochs,
                                          "extra": [f"--data.on_device={resident}"]}, 90)
        fold = [f"--config={CONFIGS / 'conv1d.yaml'}", f"--trainer.max_epochs={fold_epochs}",
                "--trainer.enable_progress_bar=false", f"--data.cache_dir={work / 'cache'}", *overrides]
        device = [f"--trainer.accelerator={args.accelerator}"]
        check.sweep("fold_gpu" if not small else "fold", [*fold, *device], [1], 90, work)
        if small:
            check.results["fold_cpu"] = {"skipped": "the whole check ran on the CPU (fold above)"}
        else:
            check.sweep("fold_cpu", [*fold, "--trainer.accelerator=cpu"], [1], 120, work)
        check.sweep("jobs2", [*fold, *device, "--jobs", "2", "--folds_per_gpu", "2"], [1, 2], 120, work)
        for strategy in ("ddp", "ddp_fork"):
            check.sweep(strategy, [*fold, *device, f"--trainer.strategy={strategy}", "--trainer.devices=1"], [1],
                        90, work, fresh_process=strategy == "ddp_fork")
    results = check.results
    figures = {"accelerator": args.accelerator, "small": small, "overrides": overrides,
               "total_seconds": round(time.perf_counter() - started, 1), "budget_seconds": budget,
               "verdict": verdict(results), "sections": results}
    if args.out:
        from common import machine

        from esc50_lightning.atomic import write_json_atomic

        path = Path(args.out)
        write_json_atomic(path, {"benchmark": "gpu_check", "command": shlex.join(sys.argv), "machine": machine(),
                                 "date": time.strftime("%Y-%m-%d"), **figures})
    else:
        path = write("gpu_check", figures)
    failed = [k for k, v in results.items() if "error" in v]
    print(f"gpu_check: {len(results) - len(failed)} of {len(results)} sections without error"
          f"{' (failed: ' + ', '.join(failed) + ')' if failed else ''}; verdict on compile: "
          f"{figures['verdict']['why']}; wrote {path}")


if __name__ == "__main__":
    main()
