"""How the command line ends on an error a user can fix: one line, and the exit code a shell tells apart."""

from __future__ import annotations

import contextlib

import typer

from tlcli.console import print_error
from tlcli.errors import TlcliError
from tlcli.runtime import debug_enabled


@contextlib.contextmanager
def one_line_errors():
    """Turn a TlcliError into `Error: ...` on stderr and its exit code (2), and Ctrl-C into
    `Interrupted.` and 130, without a traceback; with --debug, let them raise for theirs."""
    try:
        yield
    except TlcliError as error:
        if debug_enabled():
            raise
        print_error(str(error))
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print_error("Interrupted.")
        raise typer.Exit(130) from None
