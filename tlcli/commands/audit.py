from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import MultiLabelOptions, SeededSplitOptions, takes_option_groups
from tlcli.commands._options import (
    BatchSize,
    DataPath,
    ImageSize,
    Json,
    ModelName,
    Overwrite,
    Quiet,
    Strict,
    Weights,
)
from tlcli.commands._render import ConsoleEvents
from tlcli.console import err, literal, out, print_json
from tlcli.storage import location, relative_name

NAME = "audit"
SHOWN = 20  # rows per section on the terminal

AuditOut = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", parser=location, metavar="PATH", show_default="the terminal only",
                 help="Folder for the reports (audit.json, a CSV and a picture per section), new or empty, or an "
                      "earlier audit's with --overwrite."),
]
FixLabels = Annotated[
    Optional[Path],
    typer.Option("--fix-labels", parser=location, metavar="FILE.csv", show_default=False,
                 help="Write a label file of every image read: its given label, the suggested one in a column of "
                      "its own (suggested_label), its split and why. `train DATA --labels FILE.csv` reads it; add "
                      "--label-columns label=suggested_label to train on the suggestions. Nothing is removed."),
]


@takes_option_groups
def run(
    data: DataPath,
    model: ModelName = "resnet50",
    weights: Weights = "imagenet",
    image_size: ImageSize = None,
    out_dir: AuditOut = None,
    fix_labels: FixLabels = None,
    overwrite: Overwrite = False,
    as_json: Json = False,
    batch_size: BatchSize = 32,
    split: SeededSplitOptions = SeededSplitOptions(),
    strict: Strict = False,
    labels: MultiLabelOptions = MultiLabelOptions(),
    quiet: Quiet = False,
) -> None:
    """Find likely label errors, near-duplicates (leakage across splits first) and outliers in a dataset. Never changes an image."""
    from tlcli.audit.audit import AuditConfig, audit

    config = AuditConfig(
        data=data, model=model, weights=weights, image_size=image_size, batch_size=batch_size, **asdict(split),
        strict=strict, **asdict(labels), out=out_dir, fix_labels=fix_labels, overwrite=overwrite,
    )
    report = audit(config, ConsoleEvents(quiet or as_json))
    document = report.document
    if as_json:
        print_json({**document, "reports": [str(report.out / name) for name in report.written] if report.out else [],
                    "fix_labels": str(report.fix_labels) if report.fix_labels else None})
    else:
        def shown(path: str) -> str:  # paths relative to DATA, as the user named its images
            return literal(relative_name(data, location(path)))

        _print_label_errors(document["label_errors"], shown)
        _print_duplicates(document["duplicates"], shown)
        _print_outliers(document["outliers"], shown)
    if report.out is not None:
        err.print(f"Reports written to {literal(report.out)}: {', '.join(report.written)}")
    if report.fix_labels is not None:
        err.print(f"Label file written to {literal(report.fix_labels)}; train on its suggestions with "
                  "--labels FILE --label-columns label=suggested_label.")


def _table(title: str, caption: str, columns: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, justify="right" if column in ("#", "quality", "p", "score", "images") else "left")
    return table


def _print_label_errors(section: dict | None, shown_path) -> None:
    if section is None:
        out.print("[dim]Label errors: not checked (see the notes).[/]")
        return
    shown = section["rows"][:SHOWN]
    table = _table(f"Likely label errors: {section['found']} of {section['checked']} images",
                   f"worst first, top {len(shown)}; p: the suggested class's out-of-fold probability; "
                   f"{section['folds']}-fold, C={section['penalty_C']:.3g}",
                   ("#", "path", "split", "given", "suggested", "p", "quality"))
    for row in shown:
        table.add_row(str(row["rank"]), shown_path(row["path"]), row["split"], literal(row["given"]),
                      literal(row["suggested"]), f"{row['suggested_probability']:.2f}", f"{row['label_quality']:.3f}")
    out.print(table)


def _print_duplicates(section: dict, shown_path) -> None:
    shown = section["rows"][:SHOWN]
    table = _table(f"Near-duplicates: {section['groups']} group(s) of {section['images']} images, "
                   f"{section['leakage_groups']} across splits (leakage)",
                   f"leakage first, top {len(shown)}; near-duplicate: cosine similarity >= "
                   f"{section['threshold_similarity']:.6f} ({section['share']:g} of the typical nearest distance)",
                   ("#", "images", "splits", "similarity", "paths"))
    for group in shown:
        splits = ", ".join(group["splits"])
        table.add_row(str(group["group"]), str(len(group["images"])),
                      f"[bold red]{splits} LEAKAGE[/]" if group["leakage"] else splits, f"{group['similarity']:.6f}",
                      "\n".join(shown_path(image["path"]) for image in group["images"]))
    out.print(table)


def _print_outliers(section: dict, shown_path) -> None:
    shown = section["rows"][:SHOWN]
    cutoff = "no cutoff (the distances do not vary)" if section["cutoff"] is None else f"flagged above {section['cutoff']:.4g}"
    table = _table(f"Outliers: {section['found']} flagged", f"farthest first, top {len(shown)}; score: mean cosine "
                   f"distance to the nearest neighbours; {cutoff} (modified z > {section['modified_z']:g})",
                   ("#", "path", "split", "label", "score", "flagged"))
    for row in shown:
        table.add_row(str(row["rank"]), shown_path(row["path"]), row["split"], literal(row["label"]),
                      f"{row['score']:.4g}", "[bold red]yes[/]" if row["flagged"] else "")
    out.print(table)
