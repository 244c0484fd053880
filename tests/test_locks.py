"""``locks.file_lock`` between real processes: one holder at a time, the holder's words kept for
whoever is refused, a killed holder never blocking anyone, and a lock that holds where Python has
no ``fcntl`` (``filelock`` falls back to its own lock there; the hand-written ``flock`` locked
nothing)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from esc50_lightning.locks import file_lock

NO_FCNTL = "import sys; sys.modules['fcntl'] = None  # as on a platform without it\n"
HOLDER = textwrap.dedent("""
    import os, sys, time, warnings
    warnings.simplefilter("ignore")
    from esc50_lightning.locks import file_lock
    with file_lock(sys.argv[1], lambda: sys.exit(3)) as fd:
        if fd is not None:  # None: filelock's own lock file, whose content is its own
            os.write(fd, b"held by the first process\\n")
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")
CONTENDER = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    from esc50_lightning.locks import file_lock
    with file_lock(sys.argv[1], lambda: sys.exit(3)):
        print("acquired", flush=True)
""")


def start_holder(path, seconds=60.0, prelude=""):
    proc = subprocess.Popen([sys.executable, "-c", prelude + HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def contend(path, prelude=""):
    """Exit status 3: the lock was busy (``busy()`` refused); 0: it was acquired."""
    return subprocess.run([sys.executable, "-c", prelude + CONTENDER, str(path)], capture_output=True, text=True,
                          timeout=120).returncode


def test_a_held_lock_calls_busy_and_keeps_what_its_holder_wrote(tmp_path):
    path = tmp_path / "sub" / "x.lock"  # its folder is made
    holder = start_holder(path)
    try:
        assert contend(path) == 3
        with pytest.raises(RuntimeError, match="busy"):
            with file_lock(path, lambda: (_ for _ in ()).throw(RuntimeError("busy"))):
                pass
        assert path.read_text() == "held by the first process\n"  # the refused one did not wipe it
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_never_blocks(tmp_path):
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    assert path.exists()  # left behind, and no matter
    with file_lock(path, lambda: pytest.fail("a dead holder's lock counted as held")) as fd:
        assert isinstance(fd, int) and os.fstat(fd)


def test_busy_may_wait_for_the_holder(tmp_path):
    path = tmp_path / "x.lock"
    holder = start_holder(path, seconds=1.0)
    waited = []
    with file_lock(path, lambda: waited.append(True)):  # returns: wait for the lock
        assert path.read_text() == "held by the first process\n"  # the holder had written, and let go
    assert waited == [True] and holder.wait(timeout=60) == 0


def test_the_lock_holds_where_python_has_no_fcntl(tmp_path):
    path = tmp_path / "x.lock"
    holder = start_holder(path, prelude=NO_FCNTL)
    try:
        assert contend(path, prelude=NO_FCNTL) == 3
    finally:
        holder.kill()
        holder.wait()
    assert contend(path, prelude=NO_FCNTL) == 0  # and is free again once its holder is gone
