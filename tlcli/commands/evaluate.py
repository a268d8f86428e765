from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import (
    AllowOutsidePaths,
    BatchSize,
    Json,
    Overwrite,
    LabelColumns,
    Labels,
    Precision,
    RunPath,
    Strategy,
    Tpu,
    Tta,
    TtaViews,
    chosen_views,
)
from tlcli.console import err, literal, out, print_json, progress
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


def run(
    model: RunPath,
    data: EvaluationDataPath,
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", help="Report top-K accuracy (default: 5 when there are more than 5 classes).",
                     show_default=False),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", parser=location, metavar="PATH", help="Folder for the report files, new or empty, or an "
                     "earlier evaluation's with --overwrite (default: the model's run directory).", show_default=False),
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
                     help="Grad-CAM maps of the predicted and true class of the N worst-loss images, "
                          "in worst_losses_explained.png."),
    ] = 0,
    tta: Tta = False,
    tta_views: TtaViews = None,
    labels: Labels = None,
    label_columns: LabelColumns = None,
    allow_outside_paths: AllowOutsidePaths = False,
    batch_size: BatchSize = 32,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    precision: Precision = "float32",
    as_json: Json = False,
) -> None:
    """Evaluate a model on labelled images: scikit-learn metrics, confusion matrix, worst mistakes."""

    from tlcli.commands._render import show_placement, show_worker_note
    from tlcli.data.dataset import count_files, discover
    from tlcli.data.labels import LabelFile
    from tlcli.data.packed import is_packed
    from tlcli.distribute.placement import DistributeConfig, place
    from tlcli.errors import TlcliError
    from tlcli.evaluate.evaluate import (
        check_thresholds_apply,
        evaluate_model,
        evaluation_labels,
        explain_worst,
        failed_thresholds,
        find_evaluation_folder,
        parse_thresholds,
        claim_reports,
        resolve_top_k,
        select_samples,
        write_reports,
    )
    from tlcli.models.saved import load_placed_model
    from tlcli.models.tta import VIEW_SETS

    view_set = chosen_views(tta, tta_views)
    thresholds = parse_thresholds(fail_under or [])
    label_file = evaluation_labels(model, data, LabelFile.parse(labels, label_columns, allow_outside_paths))
    folder, description = find_evaluation_folder(data, label_file)
    placement = place(DistributeConfig(strategy, tpu, precision), data)  # before any model: multi-worker needs it so
    # Only the chief writes: the other workers of a cluster (on this machine too) claim nothing.
    reports = claim_reports(model, out_dir, overwrite=overwrite, data=(data, label_file and label_file.path.parent)) \
        if placement.is_chief else None
    keras_model, info = load_placed_model(model, placement)
    if info.multi_label and explain:
        raise TlcliError("--explain does not yet work with a multi-label run. Evaluate without --explain.")
    top_k = None if info.multi_label else resolve_top_k(top_k, len(info.class_names))
    check_thresholds_apply(thresholds, len(info.class_names), top_k, info.multi_label)
    err.print(f"Evaluating {literal(info.model_location)} on {literal(description)}.")
    if view_set is not None:
        err.print(f"Test-time augmentation: on ({literal(VIEW_SETS[view_set].describe())}); "
                  "the single view's numbers are shown beside.")
    show_placement(placement, batch_size)

    bar, advance = progress("Checking images", None if is_packed(folder) else count_files(discover(folder, label_file)))
    with bar:
        selection = select_samples(folder, info.class_names, description, on_checked=advance, labels=label_file)
    bar, advance = progress("Predicting", len(selection.samples))
    with bar:
        evaluation = evaluate_model(keras_model, info.class_names, info.image_size, selection,
                                    info.model_location, top_k, batch_size, on_predicted=advance, placement=placement,
                                    tta=view_set, thresholds=info.thresholds() if info.multi_label else None)
    changed = label_file.changed_since(info.config) if label_file is not None else None
    if changed:  # scored against labels that are not the ones the run learnt
        evaluation.notes.append(changed)
    if explain and placement.is_chief:
        with progress("Explaining the worst losses", None)[0]:
            explain_worst(keras_model, evaluation, explain, info.image_size)
    report = evaluation.to_dict()
    if placement.is_chief:
        _show_results(report, write_reports(evaluation, reports), reports.path, as_json)
    else:
        show_worker_note(placement, "the chief writes the reports.")

    failures = failed_thresholds(report, thresholds)
    for failure in failures:
        err.print(f"[bold red]Failed:[/] {failure}")
    if failures:
        raise typer.Exit(1)


def _show_results(report: dict, written: list[Path], reports: Path, as_json: bool) -> None:
    """The chief's part: the skipped files, the report (or its JSON), its notes and where it went."""
    _print_problems(report["skipped"])
    if as_json:
        print_json({**report, "reports": [str(path) for path in written]})
    else:
        _print_report(report)
    for note in report["notes"]:
        err.print(f"[dim]Note: {literal(note)}.[/]")
    err.print(f"Reports written to {literal(reports)}: {', '.join(path.name for path in written)}")


def _print_problems(skipped: list[dict]) -> None:
    if not skipped:
        return
    err.print(f"[yellow]Skipped {len(skipped)} file(s) that cannot be read:[/]")
    for problem in skipped[:_SHOWN_PROBLEMS]:
        err.print(f"  {literal(problem['path'])}: {literal(problem['reason'])}")
    if len(skipped) > _SHOWN_PROBLEMS:
        err.print(f"  ... and {len(skipped) - _SHOWN_PROBLEMS} more (all are in evaluation.json)")


def _print_report(report: dict) -> None:
    from rich.table import Table

    from tlcli.evaluate.metrics import summary_rows

    if report.get("multi_label"):
        _print_multi_label_report(report)
        return
    tta = report.get("tta")
    if tta is None:
        summary = Table(title=f"Evaluation on {literal(report['data'])}")
        summary.add_column("metric")
        summary.add_column("value", justify="right")
        for name, value in summary_rows(report):
            summary.add_row(name, value)
    else:
        summary = Table(title=f"Evaluation on {literal(report['data'])}",
                        caption=f"TTA: {literal(tta['description'])}")
        summary.add_column("metric")
        summary.add_column("single view", justify="right")
        summary.add_column(f"with TTA ({tta['views']}, {tta['count']} views)", justify="right")
        single = dict(summary_rows(tta["single_view"]))
        for name, value in summary_rows(report):
            summary.add_row(name, single.get(name, ""), value)
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


def _print_multi_label_report(report: dict) -> None:
    from rich.table import Table

    from tlcli.evaluate.metrics import multi_label_summary_rows

    summary = Table(title=f"Evaluation on {literal(report['data'])} (multi-label)")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for name, value in multi_label_summary_rows(report):
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
