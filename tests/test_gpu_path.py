"""What runs when CUDA is present, tested on a CPU: CUDA replaced by fakes where it is asked,
and the meta device standing in for a GPU where tensors must live elsewhere than the CPU."""

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from esc50_lightning import hardware
from esc50_lightning.errors import ESC50Error
from esc50_lightning.hardware import CudaDevice
from esc50_lightning.training import executors

from .conftest import FAST_DATA
from .test_cli import fast_args

H200 = CudaDevice("NVIDIA H200", (9, 0), "GPU-5b1c7e2a-0000-0000-0000-000000000001")
V100 = CudaDevice("Tesla V100-SXM2-16GB", (7, 0), "GPU-9f00aa11-0000-0000-0000-000000000002")


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with GPUs as Lightning and our policy see them (counted, described by NVML),
    where anything that would create a CUDA context fails the test."""
    queried = []

    def no_context(*args, **kwargs):
        queried.append(args)
        raise AssertionError("a CUDA context was created")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "_lazy_init", no_context)
    monkeypatch.setattr(torch.cuda, "init", no_context)
    monkeypatch.setattr(hardware, "nvml_devices", lambda: [H200])
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored after
    matmul = torch.get_float32_matmul_precision()
    yield queried
    torch.set_float32_matmul_precision(matmul)


# ----- 2. no CUDA context in the process that builds the Trainer -----
def test_no_cuda_query_while_the_trainer_is_built(fake_cuda):
    from esc50_lightning.training import ESC50Trainer

    trainer = ESC50Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert not fake_cuda and not torch.cuda.is_initialized()  # ddp_fork / ddp_notebook stay possible
    assert trainer.precision == "bf16-mixed" and trainer.strategy.root_device.type == "cuda"
    assert torch.backends.cudnn.benchmark is True and torch.get_float32_matmul_precision() == "high"
    assert ESC50Trainer(logger=False, deterministic=True).precision == "bf16-mixed"


def test_the_policy_reads_the_visible_gpus_from_nvml(monkeypatch):
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "nvml_devices", lambda: [H200, V100])

    def on(visible):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return hardware.detect("auto")

    assert on("0").native_bf16 and on("0").capability == (9, 0) and on("0").name == "NVIDIA H200"
    assert not on("1").native_bf16  # a V100: 16-mixed, not emulated bf16
    assert hardware.choose_precision(on("0, 1"))[0] == "16-mixed"  # every visible GPU must have bf16
    assert on(V100.uuid[:12]).name == V100.name  # a UUID prefix, as CUDA takes it
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "compute capability 7.0" in hardware.detect("auto").describe()


# ----- 3. compile where it can run, one graph per mode -----
def classifier(compile_setting, device="cpu"):
    from esc50_lightning.models import AudioClassifier
    from esc50_lightning.models.nets import Conv1D

    model = AudioClassifier(lambda b, f, c: Conv1D(b, f, c, channels=(8, 8)), input_shape=(16, 20), num_classes=4,
                            compile=compile_setting)
    model._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    return model


def test_compile_is_refused_below_capability_7(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: (6, 0))  # a P100
    model = classifier("auto", "cuda")
    with caplog.at_level("INFO", "esc50_lightning"):
        assert model.wants_compile(torch.device("cuda")) is False
    assert "compile off: torch.compile's GPU backend (Triton) needs compute capability 7.0" in caplog.text
    with pytest.raises(ESC50Error, match="--model.compile true: .* this GPU has 6.0"):
        classifier(True, "cuda").wants_compile(torch.device("cuda"))
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: (7, 0))
    assert classifier("auto", "cuda").wants_compile(torch.device("cuda")) is True


def test_a_shape_changing_last_batch_runs_eagerly_instead_of_compiling_again(monkeypatch):
    from esc50_lightning.models import classifier as module

    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(tuple(example_inputs[0].shape) if example_inputs else ())
        return graph.forward

    monkeypatch.setitem(module.COMPILE_OPTIONS, "backend", counting_backend)
    torch._dynamo.reset()
    model = classifier(True)
    model.configure_model()
    assert model.compiled and model.example_input_array is None  # the summary compiles no throwaway graph
    x = torch.randn(8, 16, 20)
    with torch.no_grad():
        model.train()
        first = model(x)
        model(x)
        model(x[:3])  # the last training batch of an uneven split
        model.eval()
        model(x)
        model(x[:5])  # 160 validation clips at 128: the last batch of 32
        eager = model.net._call_impl(x[:5])
        assert torch.allclose(model(x[:5]), eager)
    assert len(graphs) == 2, graphs  # one per mode, none for the odd shapes
    assert first.shape == (8, 4) and model.compiled_shapes == {True: (8, 16, 20), False: (8, 16, 20)}


# ----- 1. weight averaging on the training device -----
class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))


def on(device):
    """What ``WarmupEMA.setup`` reads of a Trainer: where it trains."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def test_the_averaged_model_follows_the_module_device_and_updates_without_reading_it():
    """The meta device stands in for a GPU: its tensors have no values, so an update that read
    one back (``int(tensor)``, ``bool(tensor == 0)``, as torch's ``AveragedModel`` does) raises."""
    from esc50_lightning.training.ema import WarmupEMA

    module, ema = Tiny(), WarmupEMA(decay=0.9)
    ema.setup(on("cpu"), module, "fit")  # set up while the module is still on the CPU, as Lightning does
    assert ema._average_model.device.type == "cpu"
    module.to("meta")  # the strategy moves the module to its device after setup
    ema.on_fit_start(on("meta"), module)
    averaged = ema._average_model
    assert {p.device.type for p in averaged.parameters()} == {"meta"} and averaged.device.type == "meta"
    for _ in range(3):
        averaged.update_parameters(module)
    assert averaged.updates == 3 and averaged.n_averaged.device.type == "meta"
    with pytest.raises(Exception, match="meta"):
        torch.optim.swa_utils.AveragedModel(module, "meta", use_buffers=True).update_parameters(module)  # torch reads

    built_there = WarmupEMA(decay=0.9)  # the Trainer says where it trains: the average is built there
    built_there.setup(on("meta"), Tiny(), "fit")
    assert built_there._average_model.device.type == "meta"


def test_the_update_count_survives_a_checkpoint():
    from esc50_lightning.training.ema import DeviceAveragedModel, WarmupEMA

    net = torch.nn.Linear(2, 2)
    averaged = DeviceAveragedModel(net, WarmupEMA(decay=0.9).average)
    for _ in range(4):
        averaged.update_parameters(net)
    restored = DeviceAveragedModel(net, WarmupEMA(decay=0.9).average)
    restored.load_state_dict(averaged.state_dict())
    assert restored.updates == 4 and int(restored.n_averaged) == 4


# ----- 4. batches sliced on the device, or copied from pinned memory -----
@pytest.fixture
def dm(tiny_root, tmp_path):
    from esc50_lightning.data import ESC50DataModule

    dm = ESC50DataModule(root=str(tiny_root), cache_dir=str(tmp_path), **FAST_DATA)
    dm.setup("fit")
    return dm


def attach(dm, device):
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1,
                                 global_rank=0, training=True)


def test_clips_on_the_device_are_sliced_there(dm, monkeypatch):
    monkeypatch.setattr(type(dm), "keeps_inputs_on_device", lambda self, device: True)
    attach(dm, "meta")  # stands in for a GPU the clips fit on
    loader = dm.train_dataloader()
    x, y = next(iter(loader))
    assert x.device.type == "meta" and y.device.type == "meta" and loader.num_workers == 0
    assert not loader.pin_memory
    first = dm.batch_tensors()[0]
    assert dm.val_dataloader().dataset.x is first  # copied to the device once, shared by every loader


def test_clips_that_stay_on_the_host_are_pinned_for_a_gpu_and_left_alone_on_a_cpu(dm):
    attach(dm, "cpu")
    assert dm.batch_tensors()[0] is dm.inputs and not dm.train_dataloader().pin_memory
    dm.on_device = False
    attach(dm, "cuda")  # a GPU told not to keep them: host tensors, pinned batches, non-blocking copies
    assert dm.keeps_inputs_on_device(torch.device("cuda")) is False
    loader = dm.train_dataloader()
    assert loader.pin_memory and loader.dataset.x is dm.inputs


def test_the_input_pipeline_moves_once_not_per_batch(dm, monkeypatch):
    moves = []
    real = type(dm.pipeline).to
    monkeypatch.setattr(type(dm.pipeline), "to", lambda self, *a, **k: moves.append(a) or real(self, *a, **k))
    x = dm.inputs[:4]
    for _ in range(5):
        dm.model_inputs(x)
    assert len(moves) <= 1


# ----- 5. --jobs on GPUs -----
@pytest.mark.parametrize(("visible", "ids"), [
    (None, None), ("", []), ("0, 1", ["0", "1"]), (" 2,,3 ", ["2", "3"]), ("-1", []), ("1,-1,0", ["1"]),
    ("GPU-5b1c7e2a, MIG-4f2e", ["GPU-5b1c7e2a", "MIG-4f2e"]),
])
def test_cuda_visible_devices_parsing(visible, ids, monkeypatch):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # unset: every GPU
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert hardware.visible_cuda_devices() == ids


def test_an_unreadable_cuda_visible_devices_is_one_line():
    with pytest.raises(ESC50Error, match="'gpu1' is neither a GPU index nor a UUID"):
        hardware.visible_cuda_devices("0,gpu1")


def test_gpu_slots_get_clean_ids_and_a_share_of_the_threads(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0, 1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    slots = executors.process_slots(2)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1"]  # not " 1", which CUDA reads as no GPU
    assert all(s["OMP_NUM_THREADS"] == "8" == s["MKL_NUM_THREADS"] for s in slots)
    shared = executors.process_slots(4, folds_per_gpu=2)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in shared] == ["0", "1", "0", "1"] and shared[0]["OMP_NUM_THREADS"] == "4"
    assert "CUDA_VISIBLE_DEVICES" not in executors.process_slots(3, accelerator="cpu")[0]


def test_jobs_larger_than_the_gpu_count_are_refused_in_one_line(tiny_root, tmp_path, monkeypatch, capsys):
    from esc50_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1"])
    with pytest.raises(SystemExit) as stop:
        main(["sweep", *fast_args(tiny_root, tmp_path / "cache"), "--folds", "1", "2", "3", "--jobs", "3",
              "--sweep_dir", str(tmp_path / "sweep")])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--jobs 3 runs 3 folds at once, 1 per GPU, and 2 GPUs are visible" in line
    assert "--folds_per_gpu 2" in line and not list((tmp_path / "sweep").glob("fold*"))  # before any fold ran
    with pytest.raises(ESC50Error, match="--trainer.devices 2 would make each of them a 2-device DDP run"):
        executors.check_parallel_folds(2, 1, {"devices": 2, "strategy": "ddp"}, ["0", "1"])
    executors.check_parallel_folds(4, 2, {"devices": "auto"}, ["0", "1"])  # two folds share each GPU
    executors.check_parallel_folds(8, 1, {"accelerator": "cpu"}, ["0"])  # folds on the CPU: no GPU limit


# ----- 5. one process builds a cache entry, the others wait and load it -----
BUILD = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    from esc50_lightning.data.cache import cached_features
    root, cache, log, out = map(Path, sys.argv[1:5])
    paths = sorted((root / "audio").glob("*.wav"))[:4]

    def compute(waves):
        with open(log, "a") as f:
            f.write("built\\n")
        time.sleep(1.5)  # long enough for the other process to find the entry missing too
        return torch.randn(len(waves), 3, 5)

    settings = {"feature": "log_mel", "sample_rate": 8000, "clip_seconds": 1.0}
    out.with_suffix(".ready").touch()  # start together: both find the entry missing
    while len(list(out.parent.glob("*.ready"))) < 2:
        time.sleep(0.05)
    torch.save(cached_features(paths, settings, cache, compute), out)
""")


def test_two_processes_building_one_cache_build_it_once(tiny_root, tmp_path):
    log = tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(tiny_root), str(tmp_path / "cache"), str(log),
                               str(tmp_path / f"out{i}.pt")]) for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert log.read_text().splitlines() == ["built"]  # one built, the other waited and loaded
    first, second = (torch.load(tmp_path / f"out{i}.pt") for i in range(2))
    assert torch.equal(first, second)


# ----- 6. Ray: a GPU fold gets the CPUs that go with its GPU -----
def test_ray_tasks_share_the_cpus_among_the_folds_that_run_at_once():
    assert executors.ray_task_resources({"CPU": 16, "GPU": 1}, 5, None, None) == (16.0, 1.0)  # one fold at a time
    assert executors.ray_task_resources({"CPU": 64, "GPU": 8}, 5, None, None) == (12.0, 1.0)
    assert executors.ray_task_resources({"CPU": 16, "GPU": 2}, 5, None, 0.5) == (4.0, 0.5)  # four folds at once
    assert executors.ray_task_resources({"CPU": 8}, 2, None, None) == (4.0, 0.0)
    assert executors.ray_task_resources({"CPU": 16, "GPU": 1}, 5, 2.0, None) == (2.0, 1.0)  # asked for


# ----- 7. precision decided per device, the MLP's too -----
@pytest.mark.parametrize(("config", "device", "expected"), [
    ("mlp.yaml", "cpu", "32-true"),  # bf16 is native here, but the MLP measured slower in it
    ("conv1d.yaml", "cpu", "bf16-mixed"),
    ("mlp.yaml", "cuda", "bf16-mixed"),  # on a GPU the tensor cores do the work
])
def test_auto_precision_per_device_and_network(tiny_root, tmp_path, monkeypatch, fake_cuda, config, device, expected):
    from esc50_lightning.training import ESC50CLI

    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2": True, "avx512": True, "avx512_bf16": True,
                                                        "amx": False})
    args = [a for a in fast_args(tiny_root, tmp_path / "cache", config) if not a.startswith("--trainer.precision")]
    cli = ESC50CLI(args=[*args, f"--trainer.accelerator={device}", "--trainer.logger=false"], run=False)
    assert str(cli.trainer.precision) == expected
    assert json.loads(cli.parser.dump(cli.config, format="json"))["trainer"]["precision"] == "auto"


# ----- the device check, in its small CPU form -----
def test_the_gpu_check_runs_small_on_a_cpu(tree, tmp_path):
    """``bench/gpu_check.py --accelerator cpu``: every section runs (or says why not) on the tiny
    tree, so the command that measures a GPU the first time one is at hand keeps working."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check.json"
    overrides = " ".join(f"--data.{k}={v}" for k, v in {**FAST_DATA, "clip_seconds": 1.0}.items())
    run = subprocess.run([sys.executable, str(repo / "bench" / "gpu_check.py"), "--accelerator", "cpu", "--root",
                          str(tree), "--out", str(out), "--overrides", overrides],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    sections = result["sections"]
    assert not {k: v for k, v in sections.items() if "error" in v or "budget" in v.get("skipped", "")}
    assert sections["policy"]["cuda_context_after_building_the_trainer"] is False
    assert sections["policy"]["precision"]["mlp"] == "32-true"
    assert sections["cnn_eager"]["seconds_per_epoch"] > 0 and sections["weight_averaging"]["ms_per_adamw_step"] > 0
    for key in ("fold", "jobs2", "ddp", "ddp_fork"):  # ddp_fork: its forked worker must not hang in OpenMP
        assert all(f["epochs"] == 1 for f in sections[key]["folds"]), key
    assert len(sections["jobs2"]["folds"]) == 2
    assert result["verdict"]["compile_pays"] is None  # measured only on a GPU
