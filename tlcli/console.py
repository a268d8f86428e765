"""Terminal output: rich tables on stdout, one-line errors and progress on stderr."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape


def stderr_console(**options) -> Console:
    """Progress and messages: wrapped between words on a terminal (a terminal breaks an
    unwrapped line mid-word), one line per message in a pipe or log file."""
    console = Console(stderr=True, highlight=False, emoji=False, **options)
    console.soft_wrap = not console.is_terminal
    return console


# No emoji codes: a folder named `a:x:b` is a class name, not a cross mark.
out = Console(highlight=False, emoji=False)
err = stderr_console()


def literal(text) -> str:
    """User input (a path, a class name, a message quoting them) as Rich markup that prints it as
    written: `[bold red]alert` keeps its brackets, a path holding `[/b]` is no closing tag."""
    return escape(str(text))


def print_json(document) -> None:
    """Plain JSON on stdout for scripts (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def print_error(message: str) -> None:
    # Messages quote user input and TOML ("[space]", "[0.1, 0.5]"): shown as written, not as markup.
    err.print(f"[bold red]Error:[/] {literal(message)}", markup=True)


def print_warning(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {literal(message)}", markup=True)


def progress(description: str, total: int | None, transient: bool = True, rate: str | None = None):
    """A progress bar on stderr, so stdout stays clean for tables and JSON.

    With `rate` (a unit such as "images"), the bar also shows the recent speed in units/s.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if rate is not None:
        columns.append(_rate_column(rate))
    bar = Progress(*columns, console=err, transient=transient)
    task = bar.add_task(description, total=total)
    return bar, lambda advance=1: bar.update(task, advance=advance)


def _rate_column(unit: str):
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} {unit}/s", style="progress.data.speed")

    return RateColumn()
