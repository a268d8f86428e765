"""What the tests of output folders share: an output lock held by another writer in this process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest

from tlcli.runs.locks import lock_output, locks_outputs


@pytest.fixture
def hold_lock():
    """`hold_lock(path, what)` locks `path` as a command writing `what` there would, from a thread of
    this process, and returns what ends that writer; the test's end ends it anyway. A thread holds
    its own locks, as another command does, and flock refuses a second open file of the lock even
    within one process: this is the lock another process would hold, without starting one."""
    releases = []

    def hold(path: Path, what: str) -> Callable[[], None]:
        locked, finished, failed = threading.Event(), threading.Event(), []

        @locks_outputs
        def writer():
            try:
                lock_output(path, f"--out {path}", what)
            except BaseException as error:  # raised again in the test's thread
                failed.append(error)
                return
            finally:
                locked.set()
            finished.wait()

        thread = threading.Thread(target=writer, name="lock-holder")
        thread.start()
        locked.wait()
        if failed:
            raise failed[0]

        def release() -> None:
            finished.set()
            thread.join()

        releases.append(release)
        return release

    yield hold
    for release in releases:
        release()
