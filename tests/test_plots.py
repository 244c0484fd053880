import json

import numpy as np
import pytest
from PIL import Image

from esc50_lightning.cli import main


def png_size(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        return image.size


def test_clip_figures(tiny_root, tmp_path):
    out = tmp_path / "figs"
    main(["plots", "waveform", "compare", "pooling", "--per-class", "--root", str(tiny_root), "--allow-subset",
          "--out", str(out), "--dpi", "50", "--tensorboard", str(tmp_path / "tb")])
    expected = {"waveform": (600, 150), "waveform_classes": (650, 75), "compare": (850, 210),
                "compare_resolution": (780, 360), "pooling": (650, 210)}
    for name, size in expected.items():
        width, height = png_size(out / f"{name}.png")
        assert abs(width - size[0]) <= 30 and abs(height - size[1]) <= 30, (name, width, height)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_curves_and_confusion(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sweep = tmp_path / "sweep"
    for fold in (1, 2):
        writer = SummaryWriter(sweep / f"fold{fold}")
        for epoch in range(5):
            for tag in ("train/loss", "val/loss", "train/acc", "val/acc"):
                writer.add_scalar(tag, epoch * 0.1 + fold, epoch)
        writer.close()
    names = [f"class_{i}" for i in range(50)]
    matrix = np.eye(50, dtype=int) * 7
    matrix[3, 4] = 5
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": [{"name": "x", "folds": [{}, {}]}], "confusion_matrix": matrix.tolist(),
                                   "class_names": names}))
    out = tmp_path / "figs"
    main(["plots", "curves", "confusion", "--run", str(sweep), "--results", str(results), "--out", str(out),
          "--dpi", "40", "--tensorboard", ""])
    assert png_size(out / "curves.png") == (520, 172)
    assert png_size(out / "confusion.png") == (680, 520)


def sweep_result(accuracy, seconds, machines):
    return {"runs": [{"name": "x", "folds": [{}, {}], "mean": {"accuracy": accuracy}, "std": {"accuracy": 0.01}}],
            "total_train_seconds": seconds, "config": {"trainer": {"max_epochs": 80, "precision": "32-true"}},
            "machines": machines}


def test_budget_figure_places_each_sweep_and_names_its_hardware(tmp_path):
    from esc50_lightning.figures.budget import budget_figure, hardware_kind, sweep_label

    gpu = [{"device": "cuda:0 (NVIDIA H100)", "cpu_native_bf16": False}]
    native, emulated = [{"device": "cpu", "cpu_native_bf16": True}], [{"device": "cpu", "cpu_native_bf16": False}]
    old = [{"cpu_kind": "recorded before ...; so its bf16 was native (AVX-512 BF16 or AMX)"}]
    kinds = [hardware_kind(sweep_result(0.5, 1, m)) for m in (gpu, native, emulated, old, [])]
    assert kinds == ["GPU", "CPU, native bf16", "CPU, bf16 emulated", "CPU, native bf16", "machine not recorded"]
    auto = sweep_result(0.5, 1, [{"device": "cpu", "auto_precision": "32-true"}])
    auto["config"]["trainer"]["precision"] = "auto"
    assert sweep_label(auto, "fast") == "fast: 80 epochs, auto: 32-true"
    assert sweep_label(sweep_result(0.5, 1, native), "cnn") == "cnn: 80 epochs, 32-true"
    fig = budget_figure({"fast": sweep_result(0.8, 1800, native), "long": sweep_result(0.9, 7200, emulated)})
    data_lines = [bar.lines[0] for bar in fig.axes[0].containers]  # each errorbar's marker line
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in data_lines]
    assert sorted(points) == [(0.5, 0.8), (2.0, 0.9)]  # hours, mean accuracy
    paths = []
    for name, accuracy in (("sweep_a", 0.7), ("sweep_b", 0.8)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(sweep_result(accuracy, 3600, native)))
    main(["plots", "budget", "--sweeps", *map(str, paths), "--out", str(tmp_path / "figs"), "--dpi", "40",
          "--tensorboard", ""])
    assert png_size(tmp_path / "figs" / "budget.png") == (360, 220)


@pytest.mark.parametrize("args, message", [
    (["curves", "--run", "{tmp}"], "no TensorBoard event files"),
    (["confusion", "--results", "{tmp}/nope.json"], "not a sweep result"),
    (["budget"], "budget needs --sweeps"),
    (["budget", "--sweeps", "{tmp}/nope.json"], "not a sweep result with accuracies"),
])
def test_missing_inputs_are_clear(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(["plots", *args, "--out", str(tmp_path), "--tensorboard", ""])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
