from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import Json, Overwrite, Quiet, RunPath
from tlcli.commands._render import ConsoleEvents
from tlcli.console import err, literal, out, print_json
from tlcli.storage import location

NAME = "report"

Evaluations = Annotated[
    Optional[list[Path]],
    typer.Option("--evaluation", parser=location, metavar="DIR", show_default=False,
                 help="A folder of `tlcli evaluate --out` reports to show too (repeatable; the run's own "
                      "reports, from evaluate without --out, are always shown)."),
]
AuditFolder = Annotated[
    Optional[Path],
    typer.Option("--audit", parser=location, metavar="DIR", show_default=False,
                 help="A `tlcli audit --out` folder: its likely label errors and near-duplicate groups."),
]
Explanations = Annotated[
    Optional[list[Path]],
    typer.Option("--explanations", parser=location, metavar="DIR", show_default=False,
                 help="A `tlcli explain --out` folder whose maps go beside the misclassified images "
                      "(repeatable; the run's own explain/ is always read)."),
]
ReportOut = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", parser=location, metavar="FILE.html",
                 show_default="report.html in the run directory, refreshed", help="Where to write the page."),
]


def run(
    run_dir: RunPath,
    evaluations: Evaluations = None,
    audit: AuditFolder = None,
    explanations: Explanations = None,
    out_path: ReportOut = None,
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write one HTML page of a run (what it is, how it learnt, how good it is, where it fails) that opens offline in any browser."""
    from tlcli.report.report import ReportConfig, report

    config = ReportConfig(run=run_dir, evaluations=tuple(evaluations or ()), audit=audit,
                          explanations=tuple(explanations or ()), out=out_path, overwrite=overwrite)
    result = report(config, ConsoleEvents(quiet or as_json))
    if as_json:
        print_json({"report": str(result.path), "bytes": result.size, "evaluations": result.evaluations,
                    "thumbnails": result.thumbnails, "notes": result.notes})
        return
    for note in result.notes:
        err.print(f"[dim]Note: {literal(note)}.[/]")
    out.print(f"Report written to {literal(result.path)} ({result.size / 2**20:.1f} MB, {result.evaluations} "
              f"evaluation(s), {result.thumbnails} thumbnail(s)). Open it in a browser; it needs no network.")
