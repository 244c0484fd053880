import numpy as np
import pytest
import soundfile as sf
import torch

from esc50_lightning.data.audio import decode_clips, load_clip, read_audio
from esc50_lightning.errors import ESC50Error


def tone(rate, seconds, freq=440.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000])
@pytest.mark.parametrize("seconds", [0.05, 5.0, 7.3])
def test_resample_and_fix_length(tmp_path, rate, seconds):
    path = tmp_path / "a.wav"
    sf.write(path, tone(rate, seconds, channels=2), rate)
    x = load_clip(path, 16000, 80000)
    assert x.shape == (80000,) and x.dtype == torch.float32
    n = min(80000, int(16000 * seconds))
    # a 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
    spec = torch.fft.rfft(x[: n - n % 2]).abs()
    peak_hz = spec.argmax().item() * 16000 / (n - n % 2)
    assert abs(peak_hz - 440) < 25
    assert x[n + 10 :].abs().max() == 0 if n < 79990 else True


@pytest.mark.parametrize("subtype, ext", [("PCM_U8", "wav"), ("PCM_24", "wav"), ("DOUBLE", "wav"),
                                          ("PCM_16", "flac"), ("VORBIS", "ogg")])
def test_formats_and_bit_depths(tmp_path, subtype, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(22050, 1.0, channels=6), 22050, subtype=subtype)
    x = load_clip(path, 16000)
    assert x.shape == (16000,)
    assert 0.3 < x.abs().max() < 0.6


def test_stereo_is_mixed_to_mono(tmp_path):
    path = tmp_path / "s.wav"
    left = tone(16000, 1.0)
    sf.write(path, np.stack([left, -left], axis=1), 16000)
    assert load_clip(path, 16000).abs().max() < 1e-4


def test_bad_files_named(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 100), 8000, subtype="FLOAT")
    sf.write(tmp_path / "inf.wav", np.array([0.1, np.inf, 0.2] * 100), 8000, subtype="DOUBLE")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1)), 8000)
    good = tmp_path / "good.wav"
    sf.write(good, tone(8000, 1.0), 8000)
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[:30])
    (tmp_path / "dir.wav").mkdir()
    cases = {"empty.wav": "empty file", "junk.wav": "cannot decode", "nan.wav": "NaN",
             "inf.wav": "NaN or infinite", "zero.wav": "no audio samples", "cut.wav": "cannot decode|no audio samples",
             "dir.wav": "directory", "missing.wav": "not found"}
    for name, message in cases.items():
        with pytest.raises(ESC50Error, match=message) as err:
            read_audio(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name))
        assert "\n" not in str(err.value)


def test_silence_is_valid(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(8000), 8000)
    assert load_clip(tmp_path / "s.wav", 16000, 80000).abs().max() == 0


def test_decode_batch_matches_single(tiny_root):
    paths = sorted((tiny_root / "audio").glob("*.wav"))[:5]
    batch = decode_clips(paths, 16000)
    assert batch.shape == (5, 80000)
    for i, p in enumerate(paths):
        assert torch.allclose(batch[i], load_clip(p, 16000, 80000), atol=1e-5)
