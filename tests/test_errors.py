"""The one exception for anything a user can fix (`tlcli.errors.TlcliError`): one line, and the exit
code a shell script tells apart (2 for bad input, 130 for an interruption, as the shell's Ctrl-C)."""

from __future__ import annotations

import io

import pytest
import typer

from tlcli.cli import reports_errors
from tlcli.errors import TlcliError
from tlcli.runs.directory import Interrupted
from tlcli.runtime import DEBUG_ENV


def raising(error):
    def command():
        raise error

    return command


@pytest.mark.parametrize("error, code, shown", [
    (TlcliError("--epochs 0 is out of range: it must be at least 1."), 2,
     "Error: --epochs 0 is out of range: it must be at least 1."),
    (Interrupted("Interrupted. runs/a keeps the last completed epoch."), 130,
     "Error: Interrupted. runs/a keeps the last completed epoch."),
    (KeyboardInterrupt(), 130, "Error: Interrupted."),
])
def test_an_error_is_one_line_and_its_exit_code(monkeypatch, error, code, shown):
    import tlcli.console
    from tlcli.console import stderr_console

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    pipe = stderr_console(file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(tlcli.console, "err", pipe)
    with pytest.raises(typer.Exit) as exited:
        reports_errors(raising(error))()
    assert exited.value.exit_code == code and pipe.file.getvalue() == shown + "\n"


@pytest.mark.parametrize("error", [TlcliError("bad input"), KeyboardInterrupt()])
def test_with_debug_the_error_itself_is_raised_for_its_traceback(monkeypatch, error):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(type(error)):
        reports_errors(raising(error))()


def test_an_error_that_is_not_the_users_to_fix_is_never_dressed_as_one(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):  # a bug: its traceback, not a one-line message
        reports_errors(raising(ZeroDivisionError("division by zero")))()
