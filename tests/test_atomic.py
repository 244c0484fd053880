"""Atomic writes: a reader sees the old file or the new one; concurrent writers never share a temporary."""

import json
import os

import pytest
import torch

from esc50_lightning.atomic import save_torch_atomic, write_json_atomic, write_text_atomic


def test_a_writer_on_another_node_with_the_same_pid_does_not_collide(tmp_path):
    """SLURM tasks on a shared filesystem repeat pids: a temporary named by pid alone is the same
    file for both. Here another node's writer holds ``.result.json.<our pid>.tmp``."""
    target = tmp_path / "fold1" / "result.json"
    target.parent.mkdir()
    theirs = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    theirs.write_text('{"half": ')  # mid-write on the other node
    write_json_atomic(target, {"accuracy": 0.5})
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert theirs.read_text() == '{"half": '  # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == [theirs.name, "result.json"]


class DiskFull:
    def __reduce__(self):
        raise OSError(28, "No space left on device")  # as a write would, part-way through the file


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "features.pt"
    save_torch_atomic(torch.ones(3), target)
    with pytest.raises(OSError, match="No space left"):
        save_torch_atomic({"features": torch.zeros(3), "rest": DiskFull()}, target)
    assert torch.equal(torch.load(target), torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["features.pt"]


def test_files_get_the_mode_a_plain_write_would(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = write_text_atomic(tmp_path / "a" / "b.md", "| x |\n")  # folders made as needed
    assert path.read_text() == "| x |\n"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_arguments_in_the_wrong_order_are_refused(tmp_path):
    with pytest.raises(TypeError, match="expected a path"):
        write_json_atomic({"accuracy": 0.5}, tmp_path / "r.json")  # the old helper took (obj, path)
