"""One writer per output: an exclusive OS file lock on each output a command writes.

The lock is an flock on `.NAME.lock` beside the output, not inside it: --overwrite replaces the
output folder, and export renames a new one into place. The kernel releases an flock when its
process ends, however it ends, so a killed command (kill -9 included) never leaves a stale lock;
the file itself may stay, and the next command simply locks it again.
"""

from __future__ import annotations

import contextvars
import fcntl
import functools
import os
from pathlib import Path

from tlcli.errors import TlcliError


class OutputLock:
    """An exclusive lock on `path`, named `name` in messages (e.g. "--out runs/a"), taken by a
    process writing `what` there (e.g. "a training run")."""

    def __init__(self, path: Path, name: str, what: str):
        absolute = Path(os.path.abspath(path))
        self.file = absolute.parent / f".{absolute.name}.lock"
        self.name, self.what = name, what
        self.descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise a TlcliError naming the process that holds it."""
        while True:
            try:
                descriptor = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:  # a read-only folder: nothing can be written there either
                raise TlcliError(
                    f"{self.name}: cannot write in {self.file.parent} ({error.strerror or error}), where tlcli "
                    "keeps the lock that stops two commands writing one output. Make it writable, or work on a copy."
                ) from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 200, 0).decode(errors="replace")
                os.close(descriptor)
                raise TlcliError(self._in_use(holder)) from None
            if _same_file(descriptor, self.file):
                break
            os.close(descriptor)  # its last holder removed it as this process opened it: lock the new one
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {self.what}\n".encode())
        self.descriptor = descriptor

    def release(self) -> None:
        try:
            os.unlink(self.file)  # while still locked, so that nobody locks a file about to vanish
        except FileNotFoundError:
            pass
        os.close(self.descriptor)

    def _in_use(self, holder: str) -> str:
        pid, _, what = holder.strip().partition(" ")
        who = f"process {pid}, which is writing {what or 'to it'} there" if pid.isdigit() else "another process"
        return f"{self.name} is in use by {who}. Wait for it to finish, or choose another --out."


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


_held: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tlcli_output_locks", default=None)


def locks_outputs(function):
    """Let `function` lock outputs (lock_output): every lock it takes is held until it returns or raises."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if _held.get() is not None:  # called from another such function: its locks serve for both
            return function(*args, **kwargs)
        held: dict[Path, OutputLock] = {}
        token = _held.set(held)
        try:
            return function(*args, **kwargs)
        finally:
            _held.reset(token)
            for lock in held.values():
                lock.release()

    return wrapper


def lock_output(path: Path, name: str, what: str) -> None:
    """Lock `path` until the running `locks_outputs` function ends; asking again for a path this
    process holds does nothing."""
    held = _held.get()
    if held is None:
        raise RuntimeError("lock_output needs a caller decorated with @locks_outputs")
    key = Path(os.path.abspath(path))
    if key not in held:
        lock = OutputLock(path, name, what)
        lock.acquire()
        held[key] = lock
