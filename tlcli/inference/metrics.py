"""Evaluation metrics from scikit-learn, and the report files built from them.

Every number is scikit-learn's, computed from true labels and the model's probabilities.
Precision, recall and F1 of a class that is never predicted (or never present) are 0/0: they
count as 0 (scikit-learn's `zero_division=0`), and a report where that happens says so.

Nothing here imports TensorFlow; matplotlib is imported (with its Agg backend) only to plot.
"""

from __future__ import annotations

import csv
import io
import warnings
from typing import Sequence

import numpy as np

from tlcli.storage import location

ZERO_DIVISION = 0
ZERO_DIVISION_NOTE = (
    "precision, recall and F1 of a class with no predicted (or no true) images are 0/0 "
    "and count as 0 (scikit-learn zero_division=0)"
)
# Metrics where higher is better, so that `--fail-under METRIC=VALUE` makes sense.
# The metrics --fail-under can gate on, for each kind of run (another is refused before any work).
SINGLE_LABEL_GATES = (
    "accuracy", "balanced_accuracy",
    "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted",
    "top_k_accuracy", "roc_auc", "pr_auc",
)
MULTI_LABEL_GATES = (
    "subset_accuracy", "mean_average_precision",
    "precision_micro", "recall_micro", "f1_micro",
    "precision_macro", "recall_macro", "f1_macro",
    "precision_samples", "recall_samples", "f1_samples",
)
GATE_METRICS = tuple(dict.fromkeys(SINGLE_LABEL_GATES + MULTI_LABEL_GATES))
MOST_CONFUSED = 10
CALIBRATION_BINS = 15  # equal-width confidence bins of the expected calibration error
_GALLERY_PIXELS = 240  # a worst-losses cell is 2.4 inches wide at 100 dpi


def default_top_k(num_classes: int) -> int | None:
    """Top-5 accuracy says something only when there are more than 5 classes."""
    return 5 if num_classes > 5 else None


def normalise_rows(probabilities) -> np.ndarray:
    """float64 probabilities whose rows sum to 1 (float32 softmax is off by ~1e-7)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def compute_metrics(
    y_true: Sequence[int], probabilities, class_names: Sequence[str], top_k: int | None = None
) -> dict:
    """Every evaluation number, under plain keys, for labels and predicted probabilities.

    `class_names` are the model's (one per probability column). Per-class numbers and the
    confusion matrix cover the classes that occur in `y_true` or among the predictions, in
    label order; `classes` names them. Top-k accuracy, ROC-AUC and log loss use all columns.
    """
    from sklearn import metrics

    y_true = np.asarray(y_true, dtype=int)
    probabilities = normalise_rows(probabilities)
    num_classes = len(class_names)
    y_pred = probabilities.argmax(axis=1)
    labels = np.union1d(y_true, y_pred)
    names = [class_names[label] for label in labels]
    all_labels = np.arange(num_classes)

    # Rows keyed by label number (no target_names): a class named "accuracy" cannot replace a summary row.
    report = metrics.classification_report(
        y_true, y_pred, labels=labels, output_dict=True, zero_division=ZERO_DIVISION
    )
    result = {
        "samples": int(len(y_true)),
        "classes": names,
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
    }
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": the score then averages the true classes.
        warnings.simplefilter("ignore", UserWarning)
        result["balanced_accuracy"] = float(metrics.balanced_accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        scores = _scores(report[f"{average} avg"])
        result.update({f"{name}_{average}": scores[name] for name in ("precision", "recall", "f1")})
    result["top_k"] = top_k
    result["top_k_accuracy"] = (
        float(metrics.top_k_accuracy_score(y_true, probabilities, k=top_k, labels=all_labels))
        if top_k
        else None
    )
    result["roc_auc"] = _roc_auc(y_true, probabilities, num_classes)
    result["log_loss"] = float(metrics.log_loss(y_true, probabilities, labels=all_labels))
    if num_classes == 2:
        result["positive_class"] = class_names[1]
        both = len(np.unique(y_true)) == 2
        result["pr_auc"] = (
            float(metrics.average_precision_score(y_true == 1, probabilities[:, 1])) if both else None
        )
    result["per_class"] = {name: _scores(report[str(label)]) for name, label in zip(names, labels)}
    with warnings.catch_warnings():
        # "A single label was found": one class is all there is to tabulate, and that is fine.
        warnings.simplefilter("ignore", UserWarning)
        matrix = metrics.confusion_matrix(y_true, y_pred, labels=labels)
    result["confusion_matrix"] = matrix.tolist()
    result["most_confused"] = most_confused_pairs(matrix, names)
    result["zero_division"] = ZERO_DIVISION
    result.update(calibration(y_true, probabilities))
    return result


def _scores(row: dict) -> dict:
    """A row of scikit-learn's `classification_report(output_dict=True)` under tlcli's keys."""
    return {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
            "support": int(row["support"])}


def calibration(y_true, probabilities, bins: int = CALIBRATION_BINS) -> dict:
    """How far the top class's probability is from how often it is right.

    `ece`: the expected calibration error over `bins` equal-width bins of that probability
    ((0, 1/bins], ..., ((bins-1)/bins, 1]), each bin's gap between mean confidence and accuracy
    weighted by its share of the images (Guo et al., 2017). `brier`: the mean over images of the
    squared distance between the probabilities and the one-hot truth (summed over classes: 0 is
    perfect, 2 the worst), as scikit-learn's `brier_score_loss` gives it for three classes or
    more; for two it is twice scikit-learn's binary figure, which counts one column.
    `calibration_bins`: the reliability diagram's table.
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        row = {"low": number / bins, "high": (number + 1) / bins, "count": count,
               "confidence": float(confidence[members].mean()) if count else None,
               "accuracy": float(correct[members].mean()) if count else None}
        if count:
            ece += count / len(y_true) * abs(row["accuracy"] - row["confidence"])
        table.append(row)
    one_hot = np.eye(probabilities.shape[1])[y_true]
    brier = float(((probabilities - one_hot) ** 2).sum(axis=1).mean())
    return {"ece": float(ece), "brier": brier, "calibration_bins": table}


def zero_division_classes(result: dict) -> list[str]:
    """The classes of a `compute_metrics` result whose precision or recall is 0/0: never
    predicted, or without true images (multi-label: labels with no positive decision or image)."""
    if result.get("multi_label"):
        return [name for name, scores in result["per_class"].items()
                if not scores["support"] or not scores["true_positives"] + scores["false_positives"]]
    matrix = np.asarray(result["confusion_matrix"])
    return [name for name, true, predicted in zip(result["classes"], matrix.sum(axis=1), matrix.sum(axis=0))
            if not true or not predicted]


def _roc_auc(y_true: np.ndarray, probabilities: np.ndarray, num_classes: int) -> float | None:
    """One-vs-rest macro ROC-AUC; for two classes, the positive (second) class's ROC-AUC.

    When the data holds only some of the model's classes, the average is over those classes
    (a class with no true images has no ROC curve). Undefined with a single true class.
    """
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_true)
    if len(present) < 2:
        return None
    if num_classes == 2:
        return float(roc_auc_score(y_true, probabilities[:, 1]))
    if len(present) == num_classes:
        return float(
            roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro",
                          labels=np.arange(num_classes))
        )
    return float(np.mean([roc_auc_score(y_true == label, probabilities[:, label]) for label in present]))


def most_confused_pairs(matrix, class_names: Sequence[str], limit: int = MOST_CONFUSED) -> list[dict]:
    """The off-diagonal cells with the most images: which class is mistaken for which."""
    matrix = np.asarray(matrix)
    pairs = []
    for true_index, row in enumerate(matrix):
        for predicted_index, count in enumerate(row):
            if true_index != predicted_index and count > 0:
                pairs.append(
                    {
                        "true": class_names[true_index],
                        "predicted": class_names[predicted_index],
                        "count": int(count),
                        "share_of_true": float(count / row.sum()),
                    }
                )
    pairs.sort(key=lambda pair: -pair["count"])
    return pairs[:limit]


def per_image_losses(y_true: Sequence[int], probabilities) -> np.ndarray:
    """Cross-entropy of each image: -log p(true class), clipped as scikit-learn's log_loss does."""
    probabilities = normalise_rows(probabilities)
    true_probability = probabilities[np.arange(len(probabilities)), np.asarray(y_true, dtype=int)]
    return -np.log(np.clip(true_probability, np.finfo(np.float64).eps, 1.0))


def misclassified_rows(paths: Sequence, y_true, probabilities, class_names: Sequence[str]) -> list[dict]:
    """The wrongly classified images, most confidently wrong first."""
    probabilities = normalise_rows(probabilities)
    y_true = np.asarray(y_true, dtype=int)
    y_pred = probabilities.argmax(axis=1)
    rows = [
        {
            "path": str(paths[i]),
            "true": class_names[y_true[i]],
            "predicted": class_names[y_pred[i]],
            "confidence": float(probabilities[i, y_pred[i]]),
            "true_probability": float(probabilities[i, y_true[i]]),
        }
        for i in np.flatnonzero(y_pred != y_true)
    ]
    return sorted(rows, key=lambda row: -row["confidence"])


def rows_to_csv(rows: list[dict], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def classification_report_text(y_true, probabilities, class_names: Sequence[str], result: dict,
                               tta: dict | None = None) -> str:
    """scikit-learn's classification_report, with the other headline numbers under it (and,
    with test-time augmentation, the single view's beside them)."""
    from sklearn.metrics import classification_report

    y_pred = normalise_rows(probabilities).argmax(axis=1)
    labels = [list(class_names).index(name) for name in result["classes"]]
    table = classification_report(
        y_true, y_pred, labels=labels, target_names=result["classes"], digits=3,
        zero_division=ZERO_DIVISION,
    )
    lines = [table.rstrip(), ""]
    if tta:
        single = dict(summary_rows(tta["single_view"]))
        lines.append(f"{'':>24}  {'single view':>11}  with TTA ({tta['views']}, {tta['count']} views)")
        for key, value in summary_rows(result):
            lines.append(f"{key:>24}  {single.get(key, ''):>11}  {value:>8}")
        lines += ["", f"TTA (test-time augmentation) averages the probabilities of {tta['description']}."]
    else:
        for key, value in summary_rows(result):
            lines.append(f"{key:>24}  {value}")
    if zero_division_classes(result):
        lines += ["", f"Note: {ZERO_DIVISION_NOTE}."]
    return "\n".join(lines) + "\n"


HEADLINE_METRICS = ("samples", "accuracy", "balanced_accuracy", "precision_macro", "recall_macro",
                    "f1_macro", "f1_weighted", "top_k_accuracy", "roc_auc", "pr_auc", "log_loss", "ece", "brier")


def headline_metrics(result: dict) -> dict:
    """The headline numbers of a `compute_metrics` result (and what names them), for `summary_rows`."""
    keys = (*HEADLINE_METRICS, "top_k", "positive_class")
    return {key: result[key] for key in keys if key in result}


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """(name, formatted value) for the headline metrics, skipping those not computed."""
    rows = []
    for key in HEADLINE_METRICS:
        value = result.get(key)
        if value is None:
            continue
        name = f"top_{result['top_k']}_accuracy" if key == "top_k_accuracy" else key
        if key == "pr_auc":
            name = f"pr_auc ({result['positive_class']})"
        rows.append((name, str(value) if isinstance(value, int) else f"{value:.4f}"))
    return rows


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg backend, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def calibration_png(result: dict) -> bytes:
    """The reliability diagram: each bin's accuracy against its mean confidence (the diagonal is
    perfect calibration), with how many images each bin holds below."""
    table = result["calibration_bins"]
    figure = _figure(5.0, 6.0)
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    width = table[0]["high"] - table[0]["low"]
    filled = [row for row in table if row["count"]]
    top.bar([row["low"] for row in filled], [row["accuracy"] for row in filled], width=width, align="edge",
            color="tab:blue", edgecolor="white", label="accuracy")
    top.bar([row["low"] for row in filled], [abs(row["confidence"] - row["accuracy"]) for row in filled],
            bottom=[min(row["confidence"], row["accuracy"]) for row in filled], width=width, align="edge",
            fill=False, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
            title=f"Reliability (ECE {result['ece']:.4f}, Brier {result['brier']:.4f})")
    top.legend(loc="upper left")
    bottom.bar([row["low"] for row in table], [row["count"] for row in table], width=width, align="edge",
               color="grey", edgecolor="white")
    bottom.set(xlabel="confidence of the top class", ylabel="images")
    return _png_bytes(figure)


def confusion_matrix_png(matrix, class_names: Sequence[str]) -> bytes:
    """Counts and row-normalised (recall per true class) side by side."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = len(class_names)
    side = min(24.0, max(3.5, 0.45 * size + 2.0))
    figure = _figure(2 * side + 1.0, side + 0.6)
    annotate = size <= 30
    for axes, values, title, fmt in (
        (figure.add_subplot(1, 2, 1), matrix, "Counts", "d"),
        (figure.add_subplot(1, 2, 2), normalised, "Normalised by true class", ".2f"),
    ):
        image = axes.imshow(values, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axes, shrink=0.8)
        axes.set_title(title)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        long_names = size > 6 and max(len(name) for name in class_names) > 2
        axes.set_xticks(range(size), class_names, rotation=90 if long_names else 0)
        axes.set_yticks(range(size), class_names)
        if annotate:
            threshold = values.max() / 2 if values.max() > 0 else 1
            for (row, column), value in np.ndenumerate(values):
                axes.text(column, row, format(value, fmt), ha="center", va="center", fontsize=8,
                          color="white" if value > threshold else "black")
    return _png_bytes(figure)


def worst_losses_png(items: Sequence[dict], columns: int = 4) -> bytes:
    """A gallery of images with true class, predicted class, its probability and the loss.

    Each item has `path`, `true`, `predicted`, `confidence` and `loss`, and may have `image`:
    its encoded bytes (a packed image's record), read instead of `path`.
    """
    from tlcli.data.images import decode_rgb, read_rgb

    rows = max(1, -(-len(items) // columns))
    figure = _figure(columns * 2.4, rows * 2.7)
    for position, item in enumerate(items):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.set_axis_off()
        try:
            encoded = item.get("image")
            axes.imshow(decode_rgb(encoded, _GALLERY_PIXELS) if encoded is not None
                        else read_rgb(str(item["path"]), least_side=_GALLERY_PIXELS))
        except Exception:  # the file changed since it was predicted: keep its caption
            axes.text(0.5, 0.5, "unreadable", ha="center", va="center")
        colour = "tab:green" if item["true"] == item["predicted"] else "tab:red"
        axes.set_title(
            f"{location(item['path']).name}\ntrue {item['true']}\n"
            f"pred {item['predicted']} ({item['confidence']:.2f})\nloss {item['loss']:.2f}",
            fontsize=8, color=colour,
        )
    if not items:
        axes = figure.add_subplot(1, 1, 1)
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no images", ha="center", va="center")
    return _png_bytes(figure)


def compute_multi_label_metrics(targets, probabilities, class_names: Sequence[str], thresholds: dict[str, float]) -> dict:
    """Every multi-label evaluation number, from multi-hot `targets`, sigmoid `probabilities`
    and each label's decision threshold (0.5 for a label without one), all scikit-learn's.

    Per label: precision, recall, F1, support, average precision and its confusion counts
    (true and false positives and negatives). Averages: micro (every decision pooled), macro
    (the labels' mean) and samples (each image's mean); mean average precision over the labels
    with a positive image; subset accuracy (every label of an image right) and Hamming loss
    (the share of wrong decisions).
    """
    from sklearn import metrics

    targets = np.asarray(targets, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    cut = np.array([thresholds.get(name, 0.5) for name in class_names])
    decisions = (probabilities >= cut).astype(int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        targets, decisions, average=None, labels=range(len(class_names)), zero_division=ZERO_DIVISION)
    confusion = metrics.multilabel_confusion_matrix(targets, decisions, labels=range(len(class_names)))
    present = targets.sum(axis=0) > 0
    average_precision = [float(metrics.average_precision_score(targets[:, i], probabilities[:, i])) if present[i]
                         else None for i in range(len(class_names))]
    result = {
        "multi_label": True,
        "samples": len(targets),
        "classes": list(class_names),
        "thresholds": {name: float(value) for name, value in zip(class_names, cut)},
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i]), "average_precision": average_precision[i],
                   "threshold": float(cut[i]), "true_positives": int(confusion[i, 1, 1]),
                   "false_positives": int(confusion[i, 0, 1]), "false_negatives": int(confusion[i, 1, 0]),
                   "true_negatives": int(confusion[i, 0, 0])}
            for i, name in enumerate(class_names)
        },
        "subset_accuracy": float(metrics.accuracy_score(targets, decisions)),
        "hamming_loss": float(metrics.hamming_loss(targets, decisions)),
        "mean_average_precision": (float(np.mean([value for value in average_precision if value is not None]))
                                   if present.any() else None),
    }
    for average in ("micro", "macro", "samples"):
        # An image with none of the labels, and none decided, is exactly right: 1, not 0/0 = 0.
        scores = metrics.precision_recall_fscore_support(targets, decisions, average=average,
                                                         zero_division=1 if average == "samples" else ZERO_DIVISION)
        for key, value in zip(("precision", "recall", "f1"), scores[:3]):
            result[f"{key}_{average}"] = float(value)
    return result


def multi_label_summary_rows(result: dict) -> list[tuple[str, str]]:
    """The headline multi-label numbers as (name, formatted value)."""
    rows = [("images", str(result["samples"])), ("subset accuracy", f"{result['subset_accuracy']:.4f}"),
            ("Hamming loss", f"{result['hamming_loss']:.4f}")]
    if result["mean_average_precision"] is not None:
        rows.append(("mean average precision", f"{result['mean_average_precision']:.4f}"))
    rows += [(f"F1 ({average})", f"{result[f'f1_{average}']:.4f}") for average in ("micro", "macro", "samples")]
    return rows


def multi_label_report_text(result: dict) -> str:
    """classification_report.txt of a multi-label evaluation: a row per label, then the averages."""
    header = (f"{'label':<24}{'threshold':>10}{'precision':>10}{'recall':>10}{'f1':>10}{'AP':>8}{'support':>9}"
              f"{'TP':>6}{'FP':>6}{'FN':>6}{'TN':>6}")
    lines = [header]
    for name, scores in result["per_class"].items():
        ap = "-" if scores["average_precision"] is None else f"{scores['average_precision']:.3f}"
        lines.append(f"{name:<24}{scores['threshold']:>10.3f}{scores['precision']:>10.3f}{scores['recall']:>10.3f}"
                     f"{scores['f1']:>10.3f}{ap:>8}{scores['support']:>9}{scores['true_positives']:>6}"
                     f"{scores['false_positives']:>6}{scores['false_negatives']:>6}{scores['true_negatives']:>6}")
    lines.append("")
    for average in ("micro", "macro", "samples"):
        lines.append(f"{average + ' avg':<24}{'':>10}" + "".join(
            f"{result[f'{key}_{average}']:>10.3f}" for key in ("precision", "recall", "f1")))
    lines.append("")
    lines += [f"{name}: {value}" for name, value in multi_label_summary_rows(result)]
    return "\n".join(lines) + "\n"
