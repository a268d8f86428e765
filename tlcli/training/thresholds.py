"""Per-label decision thresholds of a multi-label head, tuned on validation to maximise F1."""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label with no positive validation image, or no validation at all


def tune_thresholds(targets: np.ndarray, probabilities: np.ndarray, class_names, trained=None) -> dict[str, float]:
    """{label: the threshold t (predict the label when p >= t) with the highest F1 on these
    images}. Of equal F1s the highest wins, and it is set halfway down to the next lower
    probability, so that it does not sit on the lowest accepted validation image. A label that
    `trained` (one bool per label) marks as absent from the training images keeps the default."""
    thresholds = {}
    for index, name in enumerate(class_names):
        if trained is not None and not trained[index]:
            thresholds[name] = DEFAULT_THRESHOLD
            continue
        thresholds[name] = best_threshold(np.asarray(targets)[:, index], np.asarray(probabilities)[:, index])
    return thresholds


def best_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    truth = truth.astype(bool)
    if not truth.any():
        return DEFAULT_THRESHOLD
    candidates = np.unique(scores)[::-1]  # highest first
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for position, candidate in enumerate(candidates):
        predicted = scores >= candidate
        true_positives = np.sum(predicted & truth)
        f1 = 2 * true_positives / (predicted.sum() + truth.sum())
        if f1 > best_f1 + 1e-12:
            lower = candidates[position + 1] if position + 1 < len(candidates) else 0.0
            best, best_f1 = float((candidate + lower) / 2), f1
    return best


def decide(probabilities: np.ndarray, thresholds: dict[str, float], class_names) -> np.ndarray:
    """0/1 decisions (images x labels): each probability against its label's threshold."""
    cut = np.array([thresholds.get(name, DEFAULT_THRESHOLD) for name in class_names], np.float32)
    return (np.asarray(probabilities) >= cut).astype(np.int64)
