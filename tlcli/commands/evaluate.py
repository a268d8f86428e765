from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import Distribution, LabelOptions, takes_option_groups
from tlcli.commands._options import Json, Overwrite, ReplicaBatchSize, RunPath, Tta, TtaViews, chosen_views
from tlcli.commands._render import ConsoleEvents, show_worker_note
from tlcli.console import err, literal, out, print_json
from tlcli.storage import location

NAME = "evaluate"
_SHOWN_PROBLEMS = 10
_MATRIX_TABLE_CLASSES = 15  # wider matrices only go to confusion_matrix.png

EvaluationDataPath = Annotated[
    Path,
    typer.Argument(
        parser=location,
        help="A dataset root (its test/ split is used, else val/) or a folder of class folders.",
        metavar="DATA",
        show_default=False,
    ),
]


@takes_option_groups
def run(
    model: RunPath,
    data: EvaluationDataPath,
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", help="Report top-K accuracy.", show_default="5 when there are more than 5 classes"),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", parser=location, metavar="PATH", help="Folder for the report files, new or empty, or an "
                     "earlier evaluation's with --overwrite.", show_default="the model's run or export folder"),
    ] = None,
    overwrite: Overwrite = False,
    fail_under: Annotated[
        Optional[list[str]],
        typer.Option("--fail-under", metavar="METRIC=VALUE",
                     help="Exit 1 when METRIC is below VALUE, e.g. accuracy=0.9 (repeatable).",
                     show_default=False),
    ] = None,
    explain: Annotated[
        int,
        typer.Option("--explain", metavar="N", min=0,
                     help="Maps of the predicted class (and the true one, where it differs) of the N worst-loss "
                          "images, drawn by --explain-method, each with its faithfulness score (the deletion test), "
                          "in worst_losses_explained.png (and evaluation.json's explained)."),
    ] = 0,
    explain_method: Annotated[str, typer.Option(metavar="METHOD", help="How --explain draws its maps: auto|gradcam|occlusion; "
                                                "auto: Grad-CAM when its maps pass the deletion test, else occlusion "
                                                "(see tlcli explain --method).")] = "auto",
    tta: Tta = False,
    tta_views: TtaViews = None,
    labels: LabelOptions = LabelOptions(),
    batch_size: ReplicaBatchSize = 32,
    distribution: Distribution = Distribution(),
    as_json: Json = False,
    page: Annotated[bool, typer.Option("--report/--no-report",
                                       help="Also write report.html: the run and this evaluation on one page "
                                            "that opens offline in any browser (see tlcli report).")] = True,
) -> None:
    """Evaluate a model on labelled images: scikit-learn metrics, confusion matrix, worst mistakes."""
    from tlcli.inference.evaluate import EvaluateConfig, evaluate

    config = EvaluateConfig(
        model=model, data=data, top_k=top_k, out=out_dir, overwrite=overwrite, fail_under=tuple(fail_under or ()),
        explain=explain, explain_method=explain_method, tta=chosen_views(tta, tta_views), batch_size=batch_size,
        **asdict(labels), **asdict(distribution), report=page,
    )
    result = evaluate(config, ConsoleEvents())
    if result.written is None:
        show_worker_note(result.placement, "the chief writes the reports.")
    else:
        _show_results(result, as_json)
    failures = result.failures()
    for failure in failures:
        err.print(f"[bold red]Failed:[/] {failure}")
    if failures:
        raise typer.Exit(1)


def _show_results(result, as_json: bool) -> None:
    """The chief's part: the skipped files, the report (or its JSON), its notes and where it went."""
    report, written = result.report, result.written
    _print_problems(report["skipped"])
    if as_json:
        print_json({**report, "reports": [str(path) for path in written]})
    elif report.get("multi_label"):
        _print_multi_label_report(report, result.summary)
    else:
        _print_report(report, result.summary, result.single_view_summary)
    for note in report["notes"]:
        err.print(f"[dim]Note: {literal(note)}.[/]")
    err.print(f"Reports written to {literal(result.reports)}: {', '.join(path.name for path in written)}")
    if result.page is not None:
        err.print(f"Open {literal(result.page)} in a browser: the run and this evaluation on one page.")


def _print_problems(skipped: list[dict]) -> None:
    if not skipped:
        return
    err.print(f"[yellow]Skipped {len(skipped)} file(s) that cannot be read:[/]")
    for problem in skipped[:_SHOWN_PROBLEMS]:
        err.print(f"  {literal(problem['path'])}: {literal(problem['reason'])}")
    if len(skipped) > _SHOWN_PROBLEMS:
        err.print(f"  ... and {len(skipped) - _SHOWN_PROBLEMS} more (all are in evaluation.json)")


def _print_report(report: dict, rows: list[tuple[str, str]], single_view: dict[str, str] | None) -> None:
    """A single-label report: its headline `rows` (beside the `single_view` ones with test-time
    augmentation), the per-class scores, the confusion matrix and the most confused pairs."""
    from rich.table import Table

    tta = report.get("tta")
    if tta is None:
        summary = Table(title=f"Evaluation on {literal(report['data'])}")
        summary.add_column("metric")
        summary.add_column("value", justify="right")
        for name, value in rows:
            summary.add_row(name, value)
    else:
        summary = Table(title=f"Evaluation on {literal(report['data'])}",
                        caption=f"TTA: {literal(tta['description'])}")
        summary.add_column("metric")
        summary.add_column("single view", justify="right")
        summary.add_column(f"with TTA ({tta['views']}, {tta['count']} views)", justify="right")
        for name, value in rows:
            summary.add_row(name, single_view.get(name, ""), value)
    out.print(summary)

    per_class = Table(title="Per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for name, scores in report["per_class"].items():
        per_class.add_row(literal(name), *(f"{scores[key]:.3f}" for key in ("precision", "recall", "f1")),
                          str(scores["support"]))
    per_class.add_section()
    for average in ("macro", "weighted"):
        per_class.add_row(f"{average} avg", *(f"{report[f'{key}_{average}']:.3f}"
                                              for key in ("precision", "recall", "f1")),
                          str(report["samples"]))
    out.print(per_class)

    classes = report["classes"]
    if len(classes) <= _MATRIX_TABLE_CLASSES:
        matrix = Table(title="Confusion matrix", caption="rows: true class, columns: predicted class")
        matrix.add_column("")
        for name in classes:
            matrix.add_column(literal(name), justify="right")
        for name, row in zip(classes, report["confusion_matrix"]):
            matrix.add_row(literal(name), *(f"[bold]{count}[/]" if i == classes.index(name) else str(count)
                                   for i, count in enumerate(row)))
        out.print(matrix)

    if report["most_confused"]:
        confused = Table(title="Most confused")
        for column in ("true", "predicted as", "images", "share of true"):
            confused.add_column(column, justify="right" if column in ("images", "share of true") else "left")
        for pair in report["most_confused"][:5]:
            confused.add_row(literal(pair["true"]), literal(pair["predicted"]), str(pair["count"]),
                             f"{pair['share_of_true']:.0%}")
        out.print(confused)
    else:
        out.print("[green]No misclassified images.[/]")


def _print_multi_label_report(report: dict, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    summary = Table(title=f"Evaluation on {literal(report['data'])} (multi-label)")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for name, value in rows:
        summary.add_row(name, value)
    out.print(summary)

    per_label = Table(title="Per label", caption="TP/FP/FN/TN: the label's confusion counts at its threshold")
    for column in ("label", "threshold", "precision", "recall", "f1", "AP", "support", "TP", "FP", "FN", "TN"):
        per_label.add_column(column, justify="left" if column == "label" else "right")
    for name, scores in report["per_class"].items():
        average_precision = scores["average_precision"]
        per_label.add_row(
            literal(name), *(f"{scores[key]:.3f}" for key in ("threshold", "precision", "recall", "f1")),
            "-" if average_precision is None else f"{average_precision:.3f}", str(scores["support"]),
            *(str(scores[key]) for key in ("true_positives", "false_positives", "false_negatives", "true_negatives")))
    per_label.add_section()
    for average in ("micro", "macro", "samples"):
        per_label.add_row(f"{average} avg", "", *(f"{report[f'{key}_{average}']:.3f}"
                                                  for key in ("precision", "recall", "f1")))
    out.print(per_label)
