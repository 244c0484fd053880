"""The console filter drops the libraries' lines a user cannot act on, emitted as the libraries emit them."""

import logging
import warnings

from esc50_lightning.console import configure_console


def test_resume_checkpoint_directory_warning_is_dropped(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    (tmp_path / "last.ckpt").write_bytes(b"")  # a resumed run's folder

    def warnings_shown(configure: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if configure:
                configure_console()
            # what ModelCheckpoint.setup calls on rank 0 when fit starts in a non-empty folder
            ModelCheckpoint(dirpath=tmp_path)._ModelCheckpoint__warn_if_dir_not_empty(tmp_path)
        return [str(w.message) for w in caught]

    assert any("exists and is not empty" in m for m in warnings_shown(False))  # Lightning still says it so
    assert warnings_shown(True) == []


def test_no_cuda_runtime_line_is_dropped(tmp_path, monkeypatch):
    import torch
    from torch.utils import cpp_extension

    logger = logging.getLogger("torch.utils.cpp_extension")
    monkeypatch.setattr(logger, "filters", [])  # as in a fresh process, before configure_console
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        cpp_extension._find_cuda_home()  # what inductor's import of cpp_extension runs
        assert [r.getMessage() for r in seen] == [f"No CUDA runtime is found, using CUDA_HOME='{tmp_path}'"]
        configure_console()
        cpp_extension._find_cuda_home()
        assert len(seen) == 1
    finally:
        logger.removeHandler(handler)
