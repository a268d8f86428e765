"""Likely label errors: images whose given label their out-of-fold prediction doubts.

Each image's class probabilities come from a linear head that did not see it: the head `train`
solves (logistic regression on standardized features), its penalty cross-validated on stratified
folds as `train` chooses it, and each image predicted by the fold model that held it out
(`training.head_solver.out_of_fold_probabilities`). cleanlab's confident learning
(`cleanlab.filter.find_label_issues`, its defaults: prune by the estimated noise rate) then finds
the likely errors, and `cleanlab.rank.get_label_quality_scores` (self-confidence: the probability
of the given label) ranks them, worst first.

Only classes of two images or more can be cross-validated; the others are left out, with a note.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tlcli.training.head_solver import MAX_FOLDS, feature_statistics, out_of_fold_probabilities


@dataclass
class LabelErrors:
    audited: np.ndarray  # positions of the images whose labels were checked
    flagged: np.ndarray  # positions of the likely errors, worst first
    quality: np.ndarray  # per image: the given label's quality, 0 (surely wrong) to 1; NaN if not checked
    suggested: np.ndarray  # per image: the class its out-of-fold probabilities favour; -1 if not checked
    confidence: np.ndarray  # per image: that class's out-of-fold probability; NaN if not checked
    penalty: float = 0.0  # the head's cross-validated C
    folds: int = 0
    seconds: float = 0.0


def find_label_errors(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                      seed: int = 0) -> tuple[LabelErrors | None, list[str]]:
    """(the likely label errors among the images, or None when no label can be checked; notes on
    what was left out and why)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names))
    checkable = np.flatnonzero(counts >= 2)
    notes = []
    lonely = [class_names[index] for index in np.flatnonzero(counts == 1)]
    if lonely:
        notes.append(f"{_listed(lonely)} {'has' if len(lonely) == 1 else 'have'} a single image, which no "
                     "cross-validation fold can hold out: left out of the label check")
    if len(checkable) < 2:
        kept = f" ({_listed([class_names[index] for index in checkable])})" if len(checkable) else ""
        notes.append(f"the label check needs two classes of two images or more, and this dataset has "
                     f"{len(checkable)}{kept}: no label is checked; the near-duplicate and outlier sections still run")
        return None, notes
    audited = np.flatnonzero(np.isin(labels, checkable))
    smallest = int(counts[checkable].min())
    if smallest < MAX_FOLDS:
        rarest = class_names[checkable[np.argmin(counts[checkable])]]
        notes.append(f"{rarest} has {smallest} images, so the labels are cross-validated in {smallest} folds, "
                     f"not {MAX_FOLDS}: each fold model sees fewer images, and its doubts are less sure")
    return _check(features, labels, audited, checkable, seed), notes


def _check(features: np.ndarray, labels: np.ndarray, audited: np.ndarray, classes: np.ndarray,
           seed: int) -> LabelErrors:
    """Out-of-fold probabilities of the `audited` images (of the `classes` given) and cleanlab's
    findings among them."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    started = time.perf_counter()
    checked = features[audited]
    mean, std = feature_statistics(checked)
    dense = np.searchsorted(classes, labels[audited])  # cleanlab wants the classes as 0..K-1
    found = out_of_fold_probabilities((checked - mean) / std, dense, seed=seed)
    probabilities = found.probabilities
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns of classes it estimates to be nearly all noise
        flagged = find_label_issues(dense, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(dense, probabilities)
    images = len(labels)
    errors = LabelErrors(audited, audited[np.asarray(flagged, np.int64)], np.full(images, np.nan),
                         np.full(images, -1, np.int64), np.full(images, np.nan), found.penalty, found.folds)
    errors.quality[audited] = quality
    errors.suggested[audited] = classes[probabilities.argmax(axis=1)]
    errors.confidence[audited] = probabilities.max(axis=1)
    errors.seconds = time.perf_counter() - started
    return errors


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"class{'es' if len(names) > 1 else ''} {shown}"
