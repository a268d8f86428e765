"""The output lock: one writer per output, across real processes, and never stale after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import source_env
from tlcli.errors import TlcliError
from tlcli.runs.locks import lock_output, locks_outputs

HOLD = """
import sys, time
from tlcli.runs.locks import lock_output, locks_outputs

@locks_outputs
def hold(path):
    lock_output(path, "--out " + path, "a training run")
    print("holding", flush=True)
    time.sleep(600)

hold(sys.argv[1])
"""


@locks_outputs
def write(path: Path) -> None:
    lock_output(path, f"--out {path}", "an export")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path/out, until the test kills it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE,
                               text=True, env=source_env())
    assert process.stdout.readline() == "holding\n"
    yield process
    process.kill()
    process.wait()


@pytest.mark.subprocess  # only a real kill shows that the kernel drops a dead process's lock
def test_a_lock_held_by_another_process_refuses_until_that_process_is_killed(holder, tmp_path):
    with pytest.raises(TlcliError, match=rf"--out {tmp_path / 'out'} is in use by process {holder.pid}, "
                                         "which is writing a training run there"):
        write(tmp_path / "out")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    write(tmp_path / "out")  # the kernel dropped the dead process's lock
    assert list(tmp_path.iterdir()) == []  # and the lock file goes with the lock


def test_a_lock_held_by_another_writer_refuses_until_that_writer_ends(hold_lock, tmp_path):
    end_the_writer = hold_lock(tmp_path / "out", "a training run")
    assert (tmp_path / ".out.lock").read_text() == f"{os.getpid()} a training run\n"
    for _ in range(2):  # refused every time, and a refusal leaves the holder's lock as it was
        with pytest.raises(TlcliError, match=rf"--out {tmp_path / 'out'} is in use by process {os.getpid()}, "
                                             "which is writing a training run there"):
            write(tmp_path / "out")
    end_the_writer()
    assert list(tmp_path.iterdir()) == []  # the lock file goes with the lock
    write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_without_a_holder_is_taken_over(tmp_path):
    """What a killed process leaves: the file, no lock (the kernel dropped it), perhaps a dead pid."""
    (tmp_path / ".out.lock").write_text("999999999 a training run\n")
    write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_that_names_no_process_is_reported_as_another_process(hold_lock, tmp_path):
    hold_lock(tmp_path / "out", "a training run")
    (tmp_path / ".out.lock").write_text("garbage")  # what the holder wrote, overwritten
    with pytest.raises(TlcliError, match=rf"^--out {tmp_path / 'out'} is in use by another process\. Wait for it"):
        write(tmp_path / "out")


def test_lock_output_needs_a_caller_that_holds_its_locks(tmp_path):
    with pytest.raises(RuntimeError, match="locks_outputs"):
        lock_output(tmp_path / "out", "--out out", "an export")
    assert list(tmp_path.iterdir()) == []


def test_locks_are_released_when_the_holding_function_raises(tmp_path):
    @locks_outputs
    def fail(path):
        lock_output(path, f"--out {path}", "an export")
        lock_output(path, f"--out {path}", "an export")  # asking twice holds it once
        raise TlcliError("bad input")

    with pytest.raises(TlcliError, match="bad input"):
        fail(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    write(tmp_path / "out")


def test_a_function_that_locks_called_from_another_shares_its_locks(tmp_path):
    """A workflow that calls another (tune runs train) holds each output once, until the outer one returns."""
    @locks_outputs
    def outer(path):
        lock_output(path, f"--out {path}", "a tuning search")
        write(path)  # the same output again, from an inner locking function: not refused
        write(path / "trial-1")
        return sorted(item.name for item in path.parent.iterdir()) + sorted(item.name for item in path.iterdir())

    (tmp_path / "out").mkdir()
    assert outer(tmp_path / "out") == [".out.lock", "out", ".trial-1.lock"]  # held until outer returns
    assert sorted(item.name for item in tmp_path.rglob("*")) == ["out"]
