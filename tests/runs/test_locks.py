"""The output lock: one writer per output, across real processes, and never stale after a kill."""

from __future__ import annotations

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


def test_a_lock_held_by_another_process_refuses_until_that_process_is_killed(holder, tmp_path):
    with pytest.raises(TlcliError, match=rf"--out {tmp_path / 'out'} is in use by process {holder.pid}, "
                                         "which is writing a training run there"):
        write(tmp_path / "out")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    write(tmp_path / "out")  # the kernel dropped the dead process's lock
    assert list(tmp_path.iterdir()) == []  # and the lock file goes with the lock


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
