from __future__ import annotations

import re
from dataclasses import asdict

import typer

from tlcli.commands._groups import MultiLabelOptions, SeededSplitOptions, takes_option_groups
from tlcli.commands._options import DataPath, Json, Strict
from tlcli.commands._render import ConsoleEvents
from tlcli.console import literal, out, print_json

NAME = "inspect"
_SHOWN_LINKS = 20
_SHOWN_PROBLEMS = 20  # problems listed one by one; more are summarised by reason


@takes_option_groups
def run(
    data: DataPath,
    as_json: Json = False,
    strict: Strict = False,
    split: SeededSplitOptions = SeededSplitOptions(),
    labels: MultiLabelOptions = MultiLabelOptions(),
) -> None:
    """Check a dataset: counts per split and class, sizes and modes, bad files, imbalance, leakage."""
    from tlcli.data.inspection import InspectConfig, inspect_data

    config = InspectConfig(data=data, **asdict(split), **asdict(labels))
    report = inspect_data(config, ConsoleEvents())
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if strict and not report.clean:
        raise typer.Exit(1)


def _print_report(report) -> None:
    """The report of `tlcli.data.inspection.inspect_data`, as tables and lines on stdout."""
    from rich.table import Table

    splits = list(report.counts)
    where = f"listed in {report.labels}" if report.labels else "packed" if report.layout == "packed" else f"{report.layout} layout"
    table = Table(title=f"{literal(report.root)} ({literal(where)})")
    table.add_column("class")
    for split in splits:
        table.add_column(literal(split), justify="right")
    for name in report.classes:
        table.add_row(literal(name), *(str(report.counts[split].get(name, "-")) for split in splits))
    table.add_row(
        "[bold]total[/]",
        *(f"[bold]{sum(report.counts[split].values())}[/]" for split in splits),
    )
    out.print(table)

    out.print(f"{report.usable} usable image(s) of {report.files} file(s).")
    if report.sizes:
        width, height = report.sizes["width"], report.sizes["height"]
        out.print(
            f"Sizes: width {width['min']}-{width['max']} (median {width['median']}), "
            f"height {height['min']}-{height['max']} (median {height['median']})."
        )
        out.print(
            "Formats: " + ", ".join(f"{name} {n}" for name, n in report.formats.items())
            + ". Modes: " + ", ".join(f"{name} {n}" for name, n in report.modes.items()) + "."
        )
    huge = report.huge_images
    if huge["count"]:
        largest = huge["largest"]
        out.print(
            f"Huge images: {huge['count']} over {huge['over_megapixels']} megapixels, the largest "
            f"{literal(largest['path'])} ({largest['width']}x{largest['height']}). All but JPEGs are decoded at full "
            "size: shrinking them speeds up training."
        )
    if report.problems:
        _print_problems(report.problems)
    if report.links:
        _print_links(report.links)
    for warning in report.warnings:
        out.print(f"[yellow]Warning:[/] {literal(warning)}")
    for note in report.notes:
        out.print(f"[dim]Note: {literal(note)}[/]")
    if report.clean:
        out.print("[green]No problems found.[/]")


def _print_problems(problems: list[dict]) -> None:
    """Every problem when there are a few; else each reason once, with its count and an example
    (a label file of 100,000 rows naming 20 files once printed 199,977 lines)."""
    from collections import Counter

    from rich.table import Table

    table = Table(title=f"{len(problems)} file(s) that will be skipped", title_style="bold red")
    if len(problems) <= _SHOWN_PROBLEMS:
        table.add_column("file")
        table.add_column("reason")
        for problem in problems:
            table.add_row(literal(problem["path"]), literal(problem["reason"]))
        out.print(table)
        return
    kind = {id(problem): re.sub(r"\d+", "N", problem["reason"]) for problem in problems}  # "row N of ..."
    counts = Counter(kind.values())
    example = {}
    for problem in problems:
        example.setdefault(kind[id(problem)], problem["path"])
    for column in ("reason", "files", "for example"):
        table.add_column(column, overflow="fold")
    for reason, count in counts.most_common(_SHOWN_PROBLEMS):
        table.add_row(literal(reason), str(count), literal(example[reason]))
    out.print(table)
    hidden = len(counts) - _SHOWN_PROBLEMS
    out.print(f"{'... and ' + str(hidden) + ' more reason(s); ' if hidden > 0 else ''}--json lists every file.")


def _print_links(links: list[dict]) -> None:
    from rich.table import Table

    from tlcli.data.inspection import OUTSIDE

    table = Table(title=f"{len(links)} link(s)")
    for column in ("link", "leads to", "what tlcli did"):
        table.add_column(column, overflow="fold")  # a path cut short would hide which file it is
    links = sorted(links, key=lambda link: link["status"] == OUTSIDE)  # the ones not followed first
    for link in links[:_SHOWN_LINKS]:
        table.add_row(literal(link["path"]), literal(link["target"]), literal(link["reason"]))
    out.print(table)
    if len(links) > _SHOWN_LINKS:
        out.print(f"... and {len(links) - _SHOWN_LINKS} more; --json lists all.")
