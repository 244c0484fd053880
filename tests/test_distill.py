"""Knowledge distillation from our own fold checkpoints: the loss, the leakage guard, a run."""

import json

import pytest
import torch

from esc50_lightning.cli import main
from esc50_lightning.errors import ESC50Error
from esc50_lightning.models.distill import check_teacher, distillation_loss

from .test_cli import fast_args

SPLIT = {"fold": 1, "val_strategy": "grouped", "val_fraction": 0.1, "seed": 0, "sample_rate": 8000,
         "clip_seconds": 5.0, "feature": "log_mel", "n_fft": 256, "win_length": None, "hop_length": 128,
         "n_mels": 32, "f_min": 0.0, "f_max": None, "top_db": 80.0}


def test_distillation_loss_is_zero_at_the_teacher_and_grows_away_from_it() -> None:
    teacher_logits = torch.randn(8, 5)
    probs = (teacher_logits / 2).softmax(-1)
    assert distillation_loss(teacher_logits, probs, 2.0).abs() < 1e-6
    assert distillation_loss(torch.randn(8, 5), probs, 2.0) > 0.01


@pytest.mark.parametrize("key, value", [("fold", 2), ("seed", 1), ("val_strategy", "none"), ("hop_length", 64)])
def test_a_teacher_from_another_split_or_input_is_refused(tmp_path, key, value) -> None:
    check_teacher(tmp_path / "t.ckpt", SPLIT, dict(SPLIT))
    with pytest.raises(ESC50Error, match=rf"t\.ckpt has data\.{key}="):
        check_teacher(tmp_path / "t.ckpt", {**SPLIT, key: value}, dict(SPLIT))
    with pytest.raises(ESC50Error, match="cannot tell which fold"):
        check_teacher(tmp_path / "t.ckpt", None, dict(SPLIT))


def test_student_distils_from_its_folds_teacher_and_refuses_another_folds(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = fast_args(tiny_root, tmp_path / "cache", "conv1d.yaml", epochs=1)
    main(["sweep", *common, "--folds=1", f"--sweep_dir={tmp_path / 'teacher'}"])
    teacher = str(tmp_path / "teacher" / "fold{fold}" / "checkpoints" / "last.ckpt")
    main(["sweep", *common, "--folds=1", f"--sweep_dir={tmp_path / 'student'}", f"--model.teachers+={teacher}",
          "--model.distill_weight=0.7"])
    fold = tmp_path / "student" / "fold1"
    result = json.loads((fold / "result.json").read_text())
    assert result["config"]["model"]["teachers"] == [teacher]
    state = torch.load(fold / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not [k for k in state if "teacher" in k]  # the teachers are not part of the student

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(fold)).Reload()
    assert "train/distill_loss" in events.Tags()["scalars"]

    with pytest.raises(SystemExit):  # fold 2 has no teacher
        main(["sweep", *common, "--folds=2", f"--sweep_dir={tmp_path / 'student'}",
              f"--model.teachers={json.dumps([teacher])}"])
    assert "fold2/checkpoints/last.ckpt not found (fold 2)" in capsys.readouterr().err
    fold1_teacher = teacher.replace("{fold}", "1")
    with pytest.raises(SystemExit):  # fold 1's teacher was trained on fold 2's clips
        main(["fit", *common, "--data.fold=2", f"--model.teachers+={fold1_teacher}"])
    err = capsys.readouterr().err
    assert "has data.fold=1, this run 2: it may have trained on this run's test" in err
    assert "Traceback" not in err
