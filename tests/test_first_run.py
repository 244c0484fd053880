"""What a new user meets first: common Trainer switches, a quiet console, truncated files."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from esc50_lightning.cli import main
from esc50_lightning.data.audio import decode_clips, read_audio

from .test_cli import fast_args
from .test_inference import ckpt  # noqa: F401  (fixture: a model trained on the tiny tree)


@pytest.mark.parametrize("switches", [
    ["--trainer.enable_checkpointing=false"],
    ["--trainer.logger=false"],
    ["--trainer.fast_dev_run=true"],
    ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"],
    ["--trainer.devices=1", "--trainer.accelerator=cpu"],
])
def test_common_trainer_switches(tiny_root, tmp_path, monkeypatch, switches):
    monkeypatch.chdir(tmp_path)
    main(["fit", *fast_args(tiny_root, tmp_path / "cache", epochs=1), *switches])


def test_console_shows_no_library_noise(tiny_root, tmp_path):
    args = [a for a in fast_args(tiny_root, tmp_path / "cache", epochs=1) if "precision" not in a]
    run = subprocess.run([sys.executable, "-m", "esc50_lightning", "fit", *args, "--trainer.precision=auto"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    console = run.stdout + run.stderr
    for noise in ("args parameter", "Tip:", "LeafSpec", "not supported by the model summary", "Warning"):
        assert noise not in console
    assert "precision 32-true: " in console or "precision bf16-mixed: " in console  # the policy's one line


def truncated_wav(path, declared_seconds=5.0, rate=16000):
    """A WAV whose header declares ``declared_seconds`` of 16-bit audio but which holds 16 bytes."""
    sf.write(path, np.zeros(int(declared_seconds * rate), np.float32), rate, subtype="PCM_16")
    blob = path.read_bytes()
    path.write_bytes(blob[:44 + 16])
    return path


def test_truncated_wav_is_named_everywhere(tiny_root, tmp_path, ckpt, capsys):  # noqa: F811
    bad = truncated_wav(tmp_path / "cut.wav")
    with pytest.raises(Exception, match=r"cut.wav: truncated: the header declares 160,000 bytes.*holds 16"):
        read_audio(bad)
    with pytest.raises(Exception, match="truncated"):  # the dataset loader
        decode_clips([bad], 16000)
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--ckpt", str(ckpt), str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.wav: truncated" in err[0]
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(16000, np.float32), 16000)
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--ckpt", str(ckpt), str(bad), str(good), "--skip-bad"])
    assert exit_.value.code == 1
    out = capsys.readouterr()
    assert "skipped" in out.err and "truncated" in out.err and "good.wav" in out.out


def test_truncated_clip_fails_verify(tree, capsys):
    victim = sorted((tree / "audio").glob("*.wav"))[3]
    data, rate = sf.read(victim)
    sf.write(victim, data, rate, subtype="PCM_16")
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(SystemExit):
        main(["data", "verify", "--root", str(tree), "--allow-subset"])
    out = capsys.readouterr().out
    assert f"{victim.name}: truncated" in out


def test_whole_files_pass_the_header_check(tmp_path):
    for ext, subtype in ((".wav", "PCM_24"), (".aiff", "PCM_16"), (".flac", "PCM_16")):
        path = tmp_path / f"ok{ext}"
        sf.write(path, np.zeros((1001, 2), np.float32), 8000, subtype=subtype)  # odd length: padded chunks
        assert read_audio(path)[0].shape == (1001, 2)
