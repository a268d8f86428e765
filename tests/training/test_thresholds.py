"""A multi-label head's decision thresholds: for each label, the one of highest F1 on the
validation images (scikit-learn's f1_score, over every possible cut, is the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tlcli.training.thresholds import DEFAULT_THRESHOLD, decide, tune_thresholds

LABELS = ("cat", "dog", "owl")


def overlapping_scores(seed: int = 0, count: int = 60):
    """Targets, and probabilities that rank them well but not perfectly."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, (count, len(LABELS)))
    return targets, np.round(0.35 * targets + rng.uniform(0, 0.65, targets.shape), 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_label_gets_the_highest_cut_of_the_best_f1_set_halfway_below_it(seed):
    targets, probabilities = overlapping_scores(seed)
    thresholds = tune_thresholds(targets, probabilities, LABELS)
    assert list(thresholds) == list(LABELS)
    for index, name in enumerate(LABELS):
        truth, scores = targets[:, index], probabilities[:, index]
        f1 = {cut: f1_score(truth, scores >= cut) for cut in np.unique(scores)}
        best = max(f1.values())
        assert f1_score(truth, scores >= thresholds[name]) == pytest.approx(best, abs=1e-12)
        highest = max(cut for cut, value in f1.items() if value >= best - 1e-12)
        below = scores[scores < highest].max(initial=0.0)
        assert thresholds[name] == pytest.approx((highest + below) / 2)  # off the lowest accepted image


def test_a_label_without_positive_validation_images_keeps_the_default():
    targets, probabilities = overlapping_scores()
    targets[:, 1] = 0
    thresholds = tune_thresholds(targets, probabilities, LABELS)
    assert thresholds["dog"] == DEFAULT_THRESHOLD and thresholds["cat"] != DEFAULT_THRESHOLD
    empty = tune_thresholds(np.zeros((0, 3)), np.zeros((0, 3)), LABELS)  # no validation images at all
    assert empty == dict.fromkeys(LABELS, DEFAULT_THRESHOLD)


def test_decisions_are_each_probability_against_its_labels_threshold():
    probabilities = np.array([[0.2, 0.9, 0.5], [0.19, 0.3, 0.49], [1.0, 0.0, 0.6]], np.float32)
    decisions = decide(probabilities, {"cat": 0.2, "dog": 0.8}, LABELS)  # owl: the default 0.5
    assert decisions.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 1]]
    assert decisions.dtype == np.int64
