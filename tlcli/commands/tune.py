from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import (
    Distribution,
    HeadOptions,
    MultiLabelOptions,
    SplitOptions,
    TuneAugmentation,
    TuneFitOptions,
    takes_option_groups,
)
from tlcli.commands._options import Overwrite, Quiet, Strict, TuneOut, dense_option
from tlcli.commands._render import ConsoleEvents
from tlcli.commands._config_file import config_option, given_on_command_line
from tlcli.console import err, literal, out
from tlcli.errors import TlcliError
from tlcli.storage import location

NAME = "tune"

# Options that are settings of the searched runs (the rest steer the search itself): how every
# trial fits, and the backbone, head and data of a head search (a fine-tuning search's are its run's).
_FINETUNE_OPTIONS = tuple(field.name for field in fields(TuneFitOptions)) + ("strict",)
_TRAIN_OPTIONS = tuple(field.name for group in (TuneFitOptions, HeadOptions, SplitOptions, MultiLabelOptions)
                       for field in fields(group)) + ("strict",)

TuneData = Annotated[Optional[Path], typer.Argument(
    parser=location, help="Dataset folder: DATA/<class>/<images> or DATA/train|val|test/<class>/<images>.",
    metavar="DATA", show_default="with --finetune, the run's dataset")]
FinetuneRun = Annotated[Optional[Path], typer.Option(
    "--finetune", metavar="RUN_DIR", parser=location, help="Search fine-tuning of this `tlcli train` run instead: how "
    "deep to unfreeze (unfreeze) and the learning rate; best.toml is for `tlcli finetune RUN_DIR --config`.",
    show_default=False)]
Search = Annotated[str, typer.Option(help="grid (every combination), random, bayesian or hyperband.")]
Trials = Annotated[Optional[int], typer.Option(help="Random and bayesian search: how many trials.", show_default="10")]
Space = Annotated[Optional[Path], typer.Option(
    parser=location, metavar="PATH", help="TOML search space: lists of values, or {low, high, log = true} ranges (not for grid).",
    show_default="grid: dense layers and dropout; else learning rate, optimizer, dropout, dense layers, weight "
    "decay and label smoothing; with --finetune: unfreeze (the top block, the top two, all) and learning rate")]
Objective = Annotated[str, typer.Option(help="val_loss (minimised) or val_accuracy (maximised).")]
TuneResume = Annotated[bool, typer.Option("--resume", help="Continue a search in --out, skipping finished trials.")]

# A --config file's top holds settings of the searched runs: these options, and any other setting of
# `tlcli train` (or `finetune`, with --finetune), which the search's kind checks; augmentation in a table.
Config = config_option(
    help="TOML file: settings that no trial varies, plus optional tables tune (search, trials, objective), "
    "space and augmentation. The command line overrides it.", rich_help_panel=None,
    exclude=("finetune", "space", "out_dir", "overwrite", "resume", "quiet", Distribution),
    tables={"tune": ("search", "trials", "objective"), "space": None, "augmentation": TuneAugmentation}, others=True,
    forms={"dense": dense_option})


@takes_option_groups
def run(
    ctx: typer.Context,
    data: TuneData = None,
    finetune: FinetuneRun = None,
    search: Search = "random",
    trials: Trials = None,
    space: Space = None,
    objective: Objective = "val_loss",
    out_dir: TuneOut = None,
    head: HeadOptions = HeadOptions(),
    fit: TuneFitOptions = TuneFitOptions(),
    split: SplitOptions = SplitOptions(),
    strict: Strict = False,
    labels: MultiLabelOptions = MultiLabelOptions(),
    augmentation: TuneAugmentation = TuneAugmentation(),
    distribution: Distribution = Distribution(),
    config: Config = None,
    overwrite: Overwrite = False,
    resume: TuneResume = False,
    quiet: Quiet = False,
) -> None:
    """Search head and optimiser settings on cached features, or fine-tuning settings of a trained run (--finetune); write a leaderboard and best.toml."""
    from tlcli.tune.search import search_config, tune

    options = {**asdict(head), **asdict(fit), **asdict(split), "strict": strict, **asdict(labels)}
    # None: not given, so the searched command's default (train's, or finetune's with --finetune).
    settings = {name: options[name] for name in _option_names(finetune, data, given_on_command_line(ctx))
                if options[name] is not None}
    tune_config = search_config(settings, data=data, finetune=finetune, space=space, config=config, search=search,
                                trials=trials, objective=objective, out=out_dir, augmentation=augmentation.chosen(),
                                distribution=distribution)
    outcome = tune(tune_config, overwrite=overwrite, resume=resume, events=ConsoleEvents(quiet))
    print_leaderboard(outcome, tune_config.objective)


def _option_names(finetune: Path | None, data: Path | None, explicit: set[str]) -> tuple[str, ...]:
    """The options the search's base settings come from: train's, or finetune's with --finetune."""
    if finetune is None:
        if data is None:
            raise TlcliError("tlcli tune needs DATA, the dataset folder; or --finetune RUN_DIR to search "
                             "fine-tuning of a trained run.")
        return _TRAIN_OPTIONS
    ignored = [name for name in _TRAIN_OPTIONS if name in explicit and name not in _FINETUNE_OPTIONS]
    if ignored:
        option = "--" + ignored[0].replace("_", "-")
        raise TlcliError(f"{option} does not go with --finetune: the backbone, weights, image size, pooling, head "
                         f"and data split are those of {finetune}. Leave {option} out.")
    return _FINETUNE_OPTIONS


def _longest_line(cells: list[str]) -> int:
    return max((len(line) for cell in cells for line in cell.splitlines()), default=0)


def _table_width(columns: list[tuple[str, list[str]]]) -> int:
    """Characters a table of these columns needs when headers wrap between words and cells never
    do: 3 a column for border and padding, less 2 for the hidden outer edge."""
    return sum(max(*map(len, header.split()), _longest_line(cells)) + 3 for header, cells in columns) - 2


def _warn_if_no_gain(best: float, baseline: float | None, objective: str) -> None:
    from tlcli.tune.search import better, format_score

    if baseline is not None and not better(best, baseline, objective):
        err.print(
            f"[yellow]No trial beat the run before fine-tuning: best {objective} {format_score(best)}, "
            f"the run's own {format_score(baseline)}. `tlcli finetune` rolls back a stage that ends worse; "
            "try lower learning rates or unfreezing less.[/]"
        )


def print_leaderboard(outcome, objective: str) -> None:
    """A column per searched setting where the terminal is wide enough, else one column with a
    setting per line: every value shows in full."""
    from rich.table import Table

    from tlcli.tune.search import format_epochs, format_score, format_value

    records = outcome.leaderboard
    # Four significant digits on screen; leaderboard.csv and .json keep every digit.
    settings = [
        {key: f"{value:.4g}" if isinstance(value, float) else format_value(value) for key, value in record["params"].items()}
        for record in records
    ]
    keys = sorted({key for row in settings for key in row})
    numbers = [
        ("rank", [str(r["rank"]) for r in records]),
        ("trial", [str(r["trial"]) for r in records]),
    ]
    results = [
        (objective, [format_score(r["objective"]) for r in records]),
        ("epochs", [format_epochs(r) for r in records]),
        ("time", [f"{r['seconds']:.1f}s" for r in records]),
    ]
    if any("trainable_parameters" in record for record in records):
        results.append(("trainable", [f"{r.get('trainable_parameters', 0) / 1e6:.1f}M" for r in records]))
    columns = numbers + [(key.replace("_", " "), [row.get(key, "") for row in settings]) for key in keys] + results
    if _table_width(columns) > out.width:
        parameters = ["\n".join(f"{key}={value}" for key, value in sorted(row.items())) for row in settings]
        columns = numbers + [("parameters", parameters)] + results

    table = Table(title=f"Leaderboard by {objective} ({outcome.ran} run now, {outcome.skipped} earlier)",
                  show_edge=False)
    for header, cells in columns:
        numeric = (header, cells) in numbers + results
        table.add_column(header, justify="right" if numeric else "left", min_width=_longest_line(cells))
    for row in zip(*(cells for _, cells in columns)):
        table.add_row(*row)
    out.print(table)
    best = outcome.out_dir / "best.toml"
    if best.is_file():
        out.print(f"Best settings: {literal(best)}\nTo use them:  {literal(outcome.next_command)}", soft_wrap=True)
        _warn_if_no_gain(records[0]["objective"], outcome.baseline, objective)
    else:
        raise TlcliError(f"No trial in {outcome.out_dir} reached a finite {objective}. Try lower learning rates.")
