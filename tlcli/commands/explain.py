from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import Overwrite, RunPath
from tlcli.commands._render import ConsoleEvents
from tlcli.console import err, literal, out, print_json
from tlcli.storage import location

NAME = "explain"


def run(
    model: RunPath,
    paths: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (searched recursively) or quoted globs ('photos/**/*.jpg').",
                       metavar="PATH...", show_default=False),
    ],
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", parser=location, metavar="PATH", help="Folder for the pictures. It must be new, empty, or an earlier explain's "
                     "folder with --overwrite; files tlcli did not write there are kept.",
                     show_default="explain/ beside the model"),
    ] = None,
    overwrite: Overwrite = False,
    class_names: Annotated[
        Optional[list[str]],
        typer.Option("--class", metavar="NAME", help="Explain this class instead of the predicted one "
                     "(repeatable: one map per class, side by side).", show_default=False),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.", min=1)] = 16,
    method: Annotated[str, typer.Option(metavar="METHOD", help="auto|gradcam|occlusion: Grad-CAM (the class's gradient "
                                        "at the backbone's last convolution) or occlusion (each region hidden in turn). auto: "
                                        "Grad-CAM when its maps of the first images pass the deletion test, else occlusion.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per image and class on stdout, its "
                                          "faithfulness and deletion test included.")] = False,
) -> None:
    """Show where the model found its evidence: a map of the predicted class (or --class) over each image, by Grad-CAM or occlusion (--method), each scored by a deletion test for how faithful it is."""
    from tlcli.inference.explain import ExplainConfig, explain

    config = ExplainConfig(model=model, inputs=tuple(paths), out=out_dir, class_names=tuple(class_names or ()),
                           batch_size=batch_size, overwrite=overwrite, method=method)
    report = explain(config, ConsoleEvents())
    if as_json:
        print_json(report.records)
    else:
        _print_records(report.records)
    for note in report.notes:
        err.print(f"[dim]Note: {literal(note)}.[/]")
    images = len({record["path"] for record in report.records})
    skipped = f"; skipped {len(report.problems)} unreadable file(s)" if report.problems else ""
    err.print(f"Explained {images} image(s){skipped}. Pictures in {literal(report.out)}"
              + (f", contact sheet {literal(report.contact_sheet.name)}." if report.contact_sheet else "."))
    if report.unknown_classes:
        raise typer.Exit(1)


def _faithfulness(record: dict) -> str:
    """The map's deletion-test score, as its picture's caption gives it."""
    if record["faithfulness"] is None:
        return "none: flat map"
    return f"{record['faithfulness']:.2f}" + ("" if record["faithful"] else " not faithful")


def _print_records(records: list[dict]) -> None:
    from rich.table import Table

    table = Table()
    table.add_column("path", overflow="fold", min_width=16)
    for column in ("class", "probability", "peak (x, y)", "faithfulness", "picture"):
        table.add_column(column, overflow="fold", justify="right" if column in ("probability", "faithfulness") else "left")
    for record in records:
        peak = record["peak"]
        table.add_row(literal(record["path"]), literal(record["class"]), f"{record['probability']:.1%}",
                      f"{peak['x']}, {peak['y']}" if peak else "flat map", _faithfulness(record),
                      literal(Path(record["picture"]).name))
    out.print(table)
