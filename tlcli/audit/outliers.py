"""Outliers: images far from every other image, which may belong to no class at all.

An image's score is its mean cosine distance to its nearest neighbours (`neighbours`): a stray
(a photo among drawings, a blank scan) has no close neighbour in any class. Every image is ranked;
those whose log score lies more than OUTLIER_Z robust standard deviations above the median
(Iglewicz and Hoaglin's modified z-score, 0.6745 (x - median) / MAD, whose customary cut is
3.5) are flagged. The log, because distances are skewed to the far side.

After an approximate search (many images: `neighbours`) the farthest EXACT_FARTHEST images are
searched again exactly, until the farthest are all exact. A graph search is least sure exactly
where this section looks, far from the rest, and a score it gives is never below the exact one
(it can only miss nearer neighbours): so the images ranked first, and every flagged one among
them, are scored as the exact search would score them, and no other image could outrank them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlcli.audit.neighbours import Neighbours

OUTLIER_Z = 3.5
EXACT_FARTHEST = 1000  # after an approximate search: the farthest images scored exactly
_MAD_TO_Z = 0.6745  # the MAD of a normal distribution, in standard deviations


@dataclass
class Outliers:
    scores: np.ndarray  # per image: mean cosine distance to its nearest neighbours
    ranked: np.ndarray  # every image position, farthest first
    flagged: np.ndarray  # the positions flagged as outliers, farthest first
    cutoff: float  # the score above which an image is flagged (infinity: none can be)


def find_outliers(neighbours: Neighbours) -> Outliers:
    """Score and rank every image by its distance from its nearest neighbours."""
    images = len(neighbours.indices)
    if neighbours.distances.shape[1] == 0:
        return Outliers(np.zeros(images), np.arange(images), np.zeros(0, np.int64), float("inf"))
    while True:
        scores = neighbours.distances.mean(axis=1)
        ranked = np.argsort(-scores, kind="stable")
        if not neighbours.refine(ranked[:EXACT_FARTHEST]):
            break
    logs = np.log(np.maximum(scores, 1e-12))
    median = float(np.median(logs))
    spread = float(np.median(np.abs(logs - median)))
    cutoff = float(np.exp(median + OUTLIER_Z * spread / _MAD_TO_Z)) if spread > 0 else float("inf")
    return Outliers(scores, ranked, ranked[scores[ranked] > cutoff], cutoff)
