"""The `tlcli` command line: parse options, call the library, turn errors into one line.

Nothing here imports TensorFlow; commands import what they need when they run, so that
`tlcli --help` answers at once.
"""

from __future__ import annotations

import functools
import math
import os
import typing
from typing import Annotated, Optional

import typer

from tlcli import __version__
from tlcli.commands import (
    audit,
    augment,
    calibrate,
    evaluate,
    explain,
    export,
    extract,
    finetune,
    inspect,
    lr_find,
    models,
    pack,
    predict,
    report,
    train,
    tune,
)
from tlcli.commands._errors import one_line_errors
from tlcli.console import print_warning
from tlcli.errors import TlcliError
from tlcli.runtime import DEBUG_ENV
from tlcli.storage import Url

app = typer.Typer(
    name="tlcli",
    help="Image-classification transfer learning on Keras 3 and TensorFlow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Show tracebacks and TensorFlow's own logs (or set {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


def check_finite(command, options: dict) -> None:
    """Refuse nan and infinity in any number option of any command, naming the option: click's
    FLOAT reads "nan" and "inf" as numbers, which no setting of tlcli means."""
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise TlcliError(f"{option_name(command, name)} {value} is not a finite number. Give a number such as 0.001.")


def warn_ephemeral(command, options: dict) -> None:
    """An output in TensorFlow's in-memory file system (ram://) is gone when the command exits:
    every command that writes there says so as it ends (after the work, so that an error stays one line)."""
    for name, value in options.items():
        if isinstance(value, Url) and value.scheme == "ram" and option_name(command, name) == "--out":
            print_warning(
                f"--out {value} is TensorFlow's in-memory file system: nothing written there "
                "remains now that this command exits. Give a folder or a gs:// (or other storage) URL to keep it."
            )


def option_name(command, parameter: str) -> str:
    """The option a command's parameter is typed as: its declared --name, else Typer's default."""
    try:
        hint = typing.get_type_hints(command, include_extras=True).get(parameter)
    except NameError:  # an annotation this module cannot resolve: Typer's default name will do
        hint = None
    for metadata in getattr(hint, "__metadata__", ()):
        # With Annotated, Typer reads a first positional name as the option's, not as its default.
        names = (getattr(metadata, "default", None), *(getattr(metadata, "param_decls", None) or ()))
        declared = [name for name in names if isinstance(name, str) and name.startswith("--")]
        if declared:
            return declared[0]
    return "--" + parameter.replace("_", "-")


def reports_errors(function):
    """Turn a TlcliError into `Error: ...` on stderr and a non-zero exit, without a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with one_line_errors():
            check_finite(function, kwargs)
            result = function(*args, **kwargs)
            warn_ephemeral(function, kwargs)
            return result

    return wrapper


for module in (models, inspect, pack, augment, train, lr_find, finetune, tune, evaluate, calibrate, explain, predict, export,
               extract, audit, report):
    app.command(module.NAME, help=module.run.__doc__)(reports_errors(module.run))


def main() -> None:
    app(prog_name="tlcli")
