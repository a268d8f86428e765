"""Evaluation numbers: each must equal scikit-learn's, computed independently here."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics

from helpers import write_image
from tlcli.inference.metrics import (
    ZERO_DIVISION_NOTE,
    classification_report_text,
    compute_metrics,
    confusion_matrix_png,
    misclassified_rows,
    most_confused_pairs,
    worst_losses_png,
)

NAMES = ("ant", "bee", "cat", "dog")


def _probabilities(rng, count, num_classes):
    return rng.dirichlet(np.ones(num_classes), size=count).astype(np.float32)


def test_multi_class_numbers_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 60)
    probabilities = _probabilities(rng, 60, 4)
    probabilities[np.arange(30), y_true[:30]] += 1.5  # half are right, with confidence
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)

    result = compute_metrics(y_true, probabilities, NAMES, top_k=2)

    assert result["classes"] == list(NAMES) and result["samples"] == 60
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        assert result[f"precision_{average}"] == pytest.approx(
            metrics.precision_score(y_true, y_pred, average=average, zero_division=0))
        assert result[f"recall_{average}"] == pytest.approx(
            metrics.recall_score(y_true, y_pred, average=average, zero_division=0))
        assert result[f"f1_{average}"] == pytest.approx(
            metrics.f1_score(y_true, y_pred, average=average, zero_division=0))
    assert result["top_k_accuracy"] == pytest.approx(metrics.top_k_accuracy_score(y_true, probabilities, k=2))
    assert result["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro"), rel=1e-6)
    assert result["log_loss"] == pytest.approx(metrics.log_loss(y_true, probabilities), rel=1e-5)
    assert result["confusion_matrix"] == metrics.confusion_matrix(y_true, y_pred).tolist()
    f1_per_class = metrics.f1_score(y_true, y_pred, average=None)
    support = np.bincount(y_true, minlength=4)
    for index, name in enumerate(NAMES):
        assert result["per_class"][name]["f1"] == pytest.approx(f1_per_class[index])
        assert result["per_class"][name]["support"] == support[index]
    assert "pr_auc" not in result  # two-class only


def test_binary_numbers_include_the_positive_class_roc_and_pr_auc():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 40)
    positive = np.clip(0.6 * y_true + rng.uniform(0, 0.5, 40), 0, 1)
    probabilities = np.stack([1 - positive, positive], axis=1)

    result = compute_metrics(y_true, probabilities, ("cat", "dog"))

    assert result["positive_class"] == "dog"
    assert result["roc_auc"] == pytest.approx(metrics.roc_auc_score(y_true, positive))
    assert result["pr_auc"] == pytest.approx(metrics.average_precision_score(y_true, positive))
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, positive >= 0.5))
    assert result["top_k"] is None and result["top_k_accuracy"] is None


def test_a_class_never_predicted_counts_zero_without_crashing_or_warning():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    # Nothing is ever predicted as class 2 ("cat").
    predicted = np.array([0, 0, 1, 1, 0, 1, 3, 3])
    probabilities = np.full((8, 4), 0.1)
    probabilities[np.arange(8), predicted] = 0.7

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_metrics(y_true, probabilities, NAMES)

    assert result["per_class"]["cat"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["precision_macro"] == pytest.approx(
        metrics.precision_score(y_true, predicted, average="macro", zero_division=0))
    assert result["zero_division"] == 0
    assert result["accuracy"] == pytest.approx(0.75)


def test_data_with_a_subset_of_the_classes():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6],
                              [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]])
    result = compute_metrics(y_true, probabilities, ("a", "b", "c"))
    # "c" has no true images but was predicted once, so it appears, with zero precision.
    assert result["classes"] == ["a", "b", "c"]
    assert result["per_class"]["c"]["support"] == 0 and result["per_class"]["c"]["precision"] == 0
    expected_auc = np.mean([metrics.roc_auc_score(y_true == c, probabilities[:, c]) for c in (0, 1)])
    assert result["roc_auc"] == pytest.approx(expected_auc)
    assert result["log_loss"] == pytest.approx(metrics.log_loss(y_true, probabilities, labels=[0, 1, 2]))

    only_two = compute_metrics(y_true[[0, 1, 3, 4]], probabilities[[0, 1, 3, 4]], ("a", "b", "c"))
    assert only_two["classes"] == ["a", "b"]
    single = compute_metrics(y_true[:2], probabilities[:2], ("a", "b", "c"))
    assert single["roc_auc"] is None and single["accuracy"] == 1.0


def test_most_confused_pairs_come_largest_first():
    matrix = [[5, 3, 0], [1, 6, 0], [0, 4, 2]]
    pairs = most_confused_pairs(matrix, ["a", "b", "c"])
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("c", "b", 4), ("a", "b", 3), ("b", "a", 1)]
    assert pairs[0]["share_of_true"] == pytest.approx(4 / 6)


def test_misclassified_rows_are_the_wrong_ones_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.45, 0.55]])
    rows = misclassified_rows(["a.png", "b.png", "c.png", "d.png"], [0, 0, 1, 0], probabilities, ("cat", "dog"))
    assert [row["path"] for row in rows] == ["b.png", "d.png"]
    assert rows[0]["true"] == "cat" and rows[0]["predicted"] == "dog"
    assert rows[0]["confidence"] == pytest.approx(0.7) and rows[0]["true_probability"] == pytest.approx(0.3)


def test_classification_report_states_the_zero_division_rule():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0]])
    y_true = [0, 0, 1, 2]
    result = compute_metrics(y_true, probabilities, ("a", "b", "c"))
    text = classification_report_text(y_true, probabilities, ("a", "b", "c"), result)
    assert text.startswith(metrics.classification_report(
        y_true, probabilities.argmax(axis=1), labels=[0, 1, 2], target_names=["a", "b", "c"],
        digits=3, zero_division=0).rstrip())
    assert ZERO_DIVISION_NOTE in text and "log_loss" in text


def _png(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize("num_classes", [2, 12])
def test_confusion_matrix_png_is_two_panels_of_a_sensible_size(num_classes):
    matrix = np.random.default_rng(2).integers(0, 20, (num_classes, num_classes))
    image = _png(confusion_matrix_png(matrix, [f"class{i}" for i in range(num_classes)]))
    width, height = image.size
    assert 500 <= width <= 5000 and 250 <= height <= 3000 and width > height
    assert np.asarray(image.convert("RGB")).std() > 10  # something is drawn


def test_worst_losses_png_shows_every_image(tmp_path):
    items = [
        {"path": write_image(tmp_path / f"{i}.png", size=(20, 20)), "true": "cat", "predicted": "dog",
         "confidence": 0.9, "loss": 2.3}
        for i in range(6)
    ]
    image = _png(worst_losses_png(items))
    width, height = image.size  # 4 columns x 2 rows of about 2.4 x 2.7 inch at 100 dpi
    assert 800 <= width <= 1100 and 400 <= height <= 700 and width > height
    assert _png(worst_losses_png([])).size[0] > 0


def test_calibration_error_and_brier_score_of_a_worked_example():
    from sklearn.metrics import brier_score_loss

    from tlcli.inference.metrics import calibration, compute_metrics

    # Two images at confidence 0.9, one right and one wrong (gap 0.4), and two at 0.7, both right
    # (gap 0.3): ECE = 0.5 * 0.4 + 0.5 * 0.3.
    y_true = [0, 1, 0, 0]
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.7, 0.3], [0.7, 0.3]])
    result = calibration(y_true, probabilities)
    assert result["ece"] == pytest.approx(0.35)
    assert [row["count"] for row in result["calibration_bins"] if row["count"]] == [2, 2]
    assert result["brier"] == pytest.approx(brier_score_loss(y_true, probabilities[:, 1]) * 2)
    metrics = compute_metrics(y_true, probabilities, ["a", "b"])
    assert metrics["ece"] == pytest.approx(0.35) and metrics["brier"] == pytest.approx(result["brier"])
    # Confidence that matches accuracy in every bin is perfectly calibrated.
    assert calibration([0, 0, 0, 1], np.array([[0.75, 0.25]] * 4))["ece"] == pytest.approx(0.0)
