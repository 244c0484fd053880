"""The one cache key scheme: content stamps, settings and a code version name a cached tensor."""

import os
import shutil

import pytest
import torch

from esc50_lightning.data import cache
from esc50_lightning.data.cache import cache_key, cached_clips, cached_features, content_key, file_stamp

from .conftest import FAST_DATA, make_tree


def never(*args, **kwargs):
    raise AssertionError("decoded or computed again despite the cache")


def test_cache_hit_does_not_decode(tiny_root, tmp_path, monkeypatch):
    paths = sorted((tiny_root / "audio").glob("*.wav"))[:4]
    first = cached_clips(paths, 8000, tmp_path)
    assert len(list(tmp_path.glob("waveforms-*.pt"))) == 1
    monkeypatch.setattr(cache, "decode_and_resample", never)
    second = cached_clips(paths, 8000, tmp_path)
    assert torch.equal(first, second)
    with pytest.raises(AssertionError):  # another sample rate is another key
        cached_clips(paths, 16000, tmp_path)


def replace_keeping_mtime(path, data: bytes) -> None:
    """What ``cp -p`` or ``rsync -t`` do: new bytes, the old modification time."""
    st = os.stat(path)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_file_replaced_with_its_mtime_kept_is_a_new_key(tmp_path):
    paths = sorted((make_tree(tmp_path / "root", seconds=2.0) / "audio").glob("*.wav"))[:3]
    before = content_key(paths)
    blob = bytearray(paths[1].read_bytes())
    assert len(blob) > 2 * cache.STAMP_BYTES  # 2 s at 44.1 kHz: head and tail are distinct reads
    for where in (100, len(blob) - 5):  # the head, then the tail
        blob[where] ^= 0xFF
        replace_keeping_mtime(paths[1], bytes(blob))
        assert file_stamp(paths[1])[1:3] == (len(blob), os.stat(paths[1]).st_mtime_ns)
        after = content_key(paths)
        assert after != before
        before = after


def test_small_files_are_hashed_whole(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(bytes(cache.STAMP_BYTES + 10))
    stamp = file_stamp(path)
    replace_keeping_mtime(path, bytes(cache.STAMP_BYTES + 5) + b"x" + bytes(4))  # past the head: read as the rest
    assert file_stamp(path) != stamp


def test_key_follows_settings_and_code_version(tiny_root, monkeypatch):
    content = content_key(sorted((tiny_root / "audio").glob("*.wav"))[:2])
    settings = {"feature": "log_mel", "n_mels": 32}
    assert cache_key(content, settings) == cache_key(content, dict(reversed(settings.items())))  # order-free
    assert cache_key(content, settings) != cache_key(content, {**settings, "n_mels": 64})
    old = cache_key(content, settings)
    monkeypatch.setattr(cache, "CODE_VERSION", cache.CODE_VERSION + 1)
    assert cache_key(content, settings) != old


def test_moved_dataset_reuses_the_cache(tree, tmp_path, monkeypatch):
    """Keyed by file names and content, not by absolute path: a copied root hits the cache."""
    paths = sorted((tree / "audio").glob("*.wav"))[:3]
    settings = {"feature": "log_mel", "sample_rate": 8000, "clip_seconds": 1.0}
    first = cached_features(paths, settings, tmp_path / "cache", lambda waves: waves[:, :10].clone())
    copy = shutil.copytree(tree, tmp_path / "copy", copy_function=shutil.copy2)
    monkeypatch.setattr(cache, "decode_and_resample", never)
    again = cached_features([copy / "audio" / p.name for p in paths], settings, tmp_path / "cache", never)
    assert torch.equal(first, again)


def test_datamodule_features_follow_the_front_end_and_the_files(tree, tmp_path, monkeypatch):
    from esc50_lightning.data import ESC50DataModule
    from esc50_lightning.data import datamodule as module

    def load(**changes):
        dm = ESC50DataModule(root=str(tree), cache_dir=str(tmp_path), clip_seconds=1.0, **{**FAST_DATA, **changes})
        dm.load_all()
        return dm.inputs

    first = load()
    assert len(list(tmp_path.glob("features-log_mel-*.pt"))) == 1
    monkeypatch.setattr(module, "compute_features", never)
    assert torch.equal(load(), first)  # a hit
    with pytest.raises(AssertionError, match="computed again"):
        load(top_db=60.0)  # a front-end setting the old key also saw
    victim = sorted((tree / "audio").glob("*.wav"))[0]
    replace_keeping_mtime(victim, victim.read_bytes()[:-2] + b"\x01\x02")
    with pytest.raises(AssertionError, match="computed again"):
        load()
