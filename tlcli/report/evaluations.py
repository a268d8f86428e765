"""The page's middle parts, one per evaluation: how good the model is (its metrics, per class,
the confusion matrix, calibration, test-time augmentation) and where it fails (the misclassified
images, worst first, with their explanations where `tlcli explain` drew them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tlcli.report.sources import EvaluationSource, RunSource, explanation_for
from tlcli.report.text import MISSING, file_name, number, share, short
from tlcli.report.thumbnails import Tile, picture_uri
from tlcli.runs.names import CALIBRATION, CONFUSION_MATRIX, WORST_EXPLAINED

MAX_MATRIX_CLASSES = 60  # a wider confusion matrix is shown as evaluate's picture, with the most confused pairs
FAILURES_SHOWN = 500  # misclassified images shown, worst first; misclassified.csv lists them all
_SETTINGS = {"top_k", "zero_division"}  # numbers in evaluation.json that are settings, not scores
MEANINGS = {
    "samples": "images evaluated",
    "accuracy": "share of images whose top class is the true one",
    "balanced_accuracy": "mean of the recall of each class",
    "precision_macro": "precision averaged over the classes, each counting alike",
    "recall_macro": "recall averaged over the classes, each counting alike",
    "f1_macro": "F1 averaged over the classes, each counting alike",
    "precision_weighted": "precision averaged over the classes, weighted by their images",
    "recall_weighted": "recall averaged over the classes, weighted by their images",
    "f1_weighted": "F1 averaged over the classes, weighted by their images",
    "top_k_accuracy": "share of images whose true class is among the top {top_k}",
    "pr_auc": "average precision of {positive_class}",
    "roc_auc": "one class against the rest, averaged",
    "log_loss": "mean of -log p(true class); lower is better",
    "ece": "expected calibration error: confidence against accuracy, lower is better",
    "brier": "squared error of the probabilities; lower is better",
    "misclassified": "images whose top class is wrong",
}


@dataclass
class Metric:
    key: str  # as evaluation.json (and evaluate --json) names it
    name: str
    value: float | int
    text: str
    meaning: str = ""
    single_view: str | None = None  # with test-time augmentation: the image alone


@dataclass
class MatrixCell:
    count: int
    share: float  # of its row (its true class)
    diagonal: bool


@dataclass
class Evaluation:
    anchor: str  # the section's id in the page
    title: str
    folder: str
    model: str
    metrics: list[Metric]
    per_class_columns: list[str] = field(default_factory=list)
    per_class: list[tuple[str, list[str]]] = field(default_factory=list)
    averages: list[tuple[str, list[str]]] = field(default_factory=list)
    matrix_classes: list[str] = field(default_factory=list)
    matrix: list[tuple[str, list[MatrixCell], int]] = field(default_factory=list)  # (true class, cells, images)
    matrix_picture: str | None = None  # when the matrix is too wide for a table
    most_confused: list[tuple[str, str, str, str]] = field(default_factory=list)
    tta: str = ""  # what test-time augmentation averaged
    tta_views: list[tuple[str, str]] = field(default_factory=list)  # (view, accuracy alone)
    calibration_picture: str | None = None  # the reliability diagram
    failures: list[Tile] = field(default_factory=list)
    failures_total: int = 0
    explained_picture: str | None = None  # evaluate --explain's worst losses, explained
    notes: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """What `tlcli calibrate` did to the run: its temperature, and the validation scores before and after."""

    temperature: str
    images: str
    rows: list[tuple[str, str, str]]  # (score, before, after)


def evaluation(source: EvaluationSource, run: RunSource, number_in_page: int) -> Evaluation:
    document = source.document
    title = str(document.get("data_description") or document.get("data") or f"evaluation {number_in_page}")
    found = Evaluation(
        anchor=f"evaluation-{number_in_page}", title=title[:1].upper() + title[1:],
        folder=str(source.folder), model=str(document.get("model", MISSING)), metrics=metrics(document),
        calibration_picture=picture_uri(source.pictures.get(CALIBRATION)),
        explained_picture=picture_uri(source.pictures.get(WORST_EXPLAINED)),
        notes=[str(note) for note in document.get("notes", [])],
    )
    _per_class(found, document)
    _confusion(found, document, source.pictures.get(CONFUSION_MATRIX))
    tta = document.get("tta")
    if isinstance(tta, dict):
        found.tta = f"{tta.get('views')}: {tta.get('description')} ({tta.get('count')} views)"
        found.tta_views = [(name, number(value)) for name, value in (tta.get("accuracy_per_view") or {}).items()]
    skipped = len(document.get("skipped") or [])
    if skipped:
        found.notes.append(f"{skipped} file(s) could not be read and were left out (evaluation.json lists them)")
    found.failures_total = len(source.misclassified)
    found.failures = [_failure_tile(row, run) for row in source.misclassified[:FAILURES_SHOWN]]
    return found


def metrics(document: dict) -> list[Metric]:
    """Every score evaluation.json holds, in its order, with the single view's beside under TTA."""
    single = (document.get("tta") or {}).get("single_view") or {}
    found = []
    for key, value in document.items():
        if key in _SETTINGS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key
        if key == "top_k_accuracy":
            name = f"top_{document.get('top_k')}_accuracy"
        elif key == "pr_auc":
            name = f"pr_auc ({document.get('positive_class')})"
        meaning = MEANINGS.get(key, "").format(top_k=document.get("top_k"), positive_class=document.get("positive_class"))
        found.append(Metric(key, name, value, number(value), meaning,
                            number(single[key]) if key in single and single[key] is not None else None))
    return found


def _per_class(found: Evaluation, document: dict) -> None:
    per_class = document.get("per_class") or {}
    if not per_class:
        return
    columns = found.per_class_columns = list(next(iter(per_class.values())))
    found.per_class = [(name, [_score(scores.get(column)) for column in columns]) for name, scores in per_class.items()]
    support = "" if document.get("multi_label") else number(document.get("samples"))  # a multi-label image counts per label
    for average in ("micro", "macro", "weighted", "samples"):
        if f"f1_{average}" in document:
            found.averages.append((f"{average} avg", [
                _score(document.get(f"{column}_{average}")) if column in ("precision", "recall", "f1")
                else support if column == "support" else "" for column in columns]))


def _score(value) -> str:
    """A per-class score as evaluate's "Per class" table prints it (three decimals)."""
    return f"{value:.3f}" if isinstance(value, float) else number(value)


def _confusion(found: Evaluation, document: dict, picture: bytes | None) -> None:
    classes, matrix = document.get("classes") or [], document.get("confusion_matrix") or []
    if not matrix:
        return
    if len(classes) > MAX_MATRIX_CLASSES:
        found.matrix_picture = picture_uri(picture)
    else:
        found.matrix_classes = [str(name) for name in classes]
        for row_number, (name, row) in enumerate(zip(classes, matrix)):
            total = sum(row)
            found.matrix.append((str(name), [MatrixCell(count, count / total if total else 0.0, column == row_number)
                                             for column, count in enumerate(row)], total))
    found.most_confused = [(str(pair["true"]), str(pair["predicted"]), number(pair["count"]),
                            share(pair["share_of_true"])) for pair in document.get("most_confused") or []]


def _failure_tile(row: dict, run: RunSource) -> Tile:
    path = row.get("path", "")
    lines = [file_name(path), f"true: {row.get('true', MISSING)}", f"predicted: {row.get('predicted', MISSING)}"]
    if "confidence" in row:
        lines[-1] += f" ({_probability(row['confidence'])})"
        lines.append(f"p(true class) {_probability(row.get('true_probability'))}")
    return Tile(path, lines, map_path=explanation_for(run, path))


def _probability(text) -> str:
    try:
        return f"{float(text):.2f}"
    except (TypeError, ValueError):
        return MISSING


def calibration(run: RunSource) -> Calibration | None:
    recorded = run.metrics.get("calibration")
    if not isinstance(recorded, dict):
        return None
    before, after = recorded.get("before") or {}, recorded.get("after") or {}
    return Calibration(short(recorded.get("temperature")), number(recorded.get("images")),
                       [(name, number(before.get(name)), number(after.get(name))) for name in ("ece", "brier", "log_loss")])
