"""Every image's nearest neighbours in feature space: one search that the near-duplicate and
outlier sections both read.

Distances are cosine distances (1 - cosine similarity) between the pooled features as the
backbone gives them, each row scaled to unit length. Not the standardized features the head
is solved on: standardizing gives a feature that barely varies (often noise, or what JPEG
re-encoding changes) the weight of one that carries the image. Measured as the closest distinct
pair's distance over the farthest resized, re-encoded copy's (README, "tlcli audit"), unscaled
features gave 1.56, 2.23, 0.35 and 1.14 on two datasets and two backbones, standardized ones
0.65, 1.07, 0.19 and 0.63 (above 1, a threshold can part copies from distinct images: three of
the four unscaled, one standardized).

The search is scikit-learn's exact `NearestNeighbors` by brute force: on a few hundred features
its ball and k-d trees prune almost nothing (measured 17 to 28 times slower), so time grows with
the square of the number of images (0.24 s for 1,800 images of 512 features, 21 s for 20,000, on
one core) while memory stays at scikit-learn's working-memory chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10  # per image: enough for a stable outlier score and to join groups of copies


@dataclass
class Neighbours:
    indices: np.ndarray  # images x k, nearest first, never the image itself
    distances: np.ndarray  # the cosine distances to them, images x k
    seconds: float = 0.0

    @property
    def nearest(self) -> np.ndarray:
        """Each image's distance to its nearest other image (empty with a single image)."""
        return self.distances[:, 0] if self.distances.shape[1] else np.zeros(0)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """The rows of `features` scaled to unit length (a row of zeros stays zeros)."""
    features = np.asarray(features, np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def nearest_neighbours(features: np.ndarray, count: int = NEIGHBOURS) -> Neighbours:
    """The `count` nearest other images of every image (fewer when there are fewer images)."""
    from sklearn.neighbors import NearestNeighbors

    started = time.perf_counter()
    units = unit_rows(features)
    images, k = len(units), min(count, len(units) - 1)
    if k < 1:
        return Neighbours(np.zeros((images, 0), np.int64), np.zeros((images, 0)), time.perf_counter() - started)
    # On unit vectors the Euclidean distance d gives the cosine distance d^2 / 2, and scikit-learn's
    # Euclidean search is its fastest.
    distances, indices = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(units).kneighbors(units)
    # Drop each image itself: where copies tie at distance 0 it need not come first.
    itself = indices == np.arange(images)[:, None]
    itself[~itself.any(axis=1), -1] = True
    indices = indices[~itself].reshape(images, k)
    distances = np.clip(distances[~itself].reshape(images, k) ** 2 / 2, 0.0, 2.0)
    return Neighbours(indices, distances, time.perf_counter() - started)
