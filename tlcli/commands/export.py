from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import ExportTta, Json, Overwrite, RunPath, TtaViews, chosen_views
from tlcli.commands._render import ConsoleEvents
from tlcli.console import err, literal, out, print_json
from tlcli.export.export import FORMATS, QUANTIZATIONS, ExportOptions, export_model  # TF is imported when it runs
from tlcli.storage import location

NAME = "export"

Format = Enum("Format", {name: name for name in FORMATS}, type=str)
Quantize = Enum("Quantize", {name: name for name in QUANTIZATIONS}, type=str)


def run(
    model: RunPath,
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", parser=location, metavar="PATH", help="Folder to write (new or empty; an earlier export only with --overwrite).",
                     show_default=False),
    ],
    formats: Annotated[
        Optional[list[Format]],
        typer.Option("--format", "-f", help="Format to write; repeat for several.", show_default="saved_model"),
    ] = None,
    quantize: Annotated[
        Optional[Quantize],
        typer.Option(help="TFLite only: dynamic-range, float16 or int8 (calibrated on training images).", show_default=False),
    ] = None,
    tta: ExportTta = False,
    tta_views: TtaViews = None,
    overwrite: Overwrite = False,
    verify: Annotated[
        bool,
        typer.Option(help="Reload each artefact in a fresh process and compare it with the Keras model."),
    ] = True,
    verify_images: Annotated[
        Optional[list[Path]],
        typer.Option(help="Images (files or folders) to verify on (and to calibrate int8 on without a dataset).",
                     show_default=False),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(parser=location, metavar="PATH", help="The dataset, where the run's recorded one has moved.", show_default=False),
    ] = None,
    as_json: Json = False,
) -> None:
    """Export a trained model: SavedModel for serving, Keras, TFLite, ONNX; each verified by reloading."""
    options = ExportOptions(
        out=out_dir,
        formats=tuple(choice.value for choice in formats or ()),
        quantize=quantize.value if quantize else None,
        overwrite=overwrite,
        verify=verify,
        verify_images=tuple(verify_images or ()),
        data=data,
        tta=chosen_views(tta, tta_views),
    )
    report = export_model(model, options, ConsoleEvents())
    if as_json:
        print_json({
            "out": str(report.out),
            "files": {name: str(path) for name, path in report.files.items()},
            "checks": [vars(check) for check in report.checks],
            "kept": report.kept,
        })
        return
    _print_report(report)
    if report.kept:
        err.print(f"[dim]Note: {literal(report.kept)}.[/]")


def _print_report(report) -> None:
    from rich.table import Table

    table = Table(title=f"Exported to {literal(report.out)}")
    for column in ("format", "file", "size"):
        table.add_column(column)
    for name, path in report.files.items():
        table.add_row(name, literal(path), _size(path))
    out.print(table)
    if not report.checks:
        out.print("[yellow]Not verified (--no-verify).[/]")
        return
    checks = Table(title="Reloaded in a fresh process and compared with the Keras model")
    for column in ("format", "images", "max |difference|", "top class agrees", "required", ""):
        checks.add_column(column)
    for check in report.checks:
        checks.add_row(
            check.format, str(check.images), f"{check.max_abs_difference:.2e}", f"{check.top_class_agreement:.0%}",
            check.requirement, "[green]ok[/]" if check.passed else "[red]failed[/]",
        )
    out.print(checks)


def _size(path: Path) -> str:
    size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size
    return f"{size / 1e6:.1f} MB"
