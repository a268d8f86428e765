"""Every image's nearest neighbours in feature space: one search that the near-duplicate and
outlier sections both read.

Distances are cosine distances (1 - cosine similarity) between the pooled features as the
backbone gives them, each row scaled to unit length. Not the standardized features the head
is solved on: standardizing gives a feature that barely varies (often noise, or what JPEG
re-encoding changes) the weight of one that carries the image. Measured as the closest distinct
pair's distance over the farthest resized, re-encoded copy's (when the threshold was chosen; no
script repeats it), unscaled features gave 1.56, 2.23, 0.35 and 1.14 on two datasets and two
backbones, standardized ones
0.65, 1.07, 0.19 and 0.63 (above 1, a threshold can part copies from distinct images: three of
the four unscaled, one standardized).

Up to EXACT_UP_TO images the search is exact: scikit-learn's `NearestNeighbors` by brute
force, whose time grows with the square of the number of images (its ball tree was 27 to 31
times slower on 512 and 2,048 features: it prunes almost nothing). Above, it is approximate:
faiss's HNSW graph (`IndexHNSWFlat`), whose time grows about linearly: 27 s for 100,000 images
of 512 features and 5 minutes for a million on 2 cores, where the brute force would take 4
minutes and 4 hours, with every near-duplicate pair the exact search finds (bench/README.md).
A graph search can lose its way for a few images (0.02 to 0.3 % of them there) and return
neighbours from another part of the data, which would make them false outliers and hide their
copies. A search that found neither the image itself nor a copy of it is such a case, and
those images are searched again exactly (`refine`; the outlier section refines its farthest
images too). The index holds a copy of the unit-length features and about 140 bytes of links
per image, and the search keeps the unit-length features for `refine`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10  # per image: enough for a stable outlier score and to join groups of copies
EXACT_UP_TO = 10_000  # images: up to this many the exact search takes seconds; above, the graph index
LINKS = 16  # HNSW's links per image and layer (its M), twice that on the bottom layer
BUILD_BREADTH = 40  # candidates kept while an image is linked in (efConstruction)
SEARCH_BREADTH = 64  # candidates kept while a search walks the graph (efSearch)
SAME = 1e-6  # a cosine distance this small is the same features: a copy may stand for the image itself


@dataclass
class Neighbours:
    indices: np.ndarray  # images x k, nearest first, never the image itself
    distances: np.ndarray  # the cosine distances to them, images x k
    seconds: float = 0.0
    search: str = "exact"  # "exact" (brute force) or "approximate" (the graph index)
    repaired: int = 0  # images of an approximate search searched again exactly
    units: np.ndarray | None = None  # an approximate search's unit-length features, for `refine`
    exact: np.ndarray | None = None  # an approximate search's images already searched exactly

    @property
    def nearest(self) -> np.ndarray:
        """Each image's distance to its nearest other image (empty with a single image)."""
        return self.distances[:, 0] if self.distances.shape[1] else np.zeros(0)

    def refine(self, rows: np.ndarray) -> int:
        """Search the images at `rows` again exactly where the search was approximate; how many
        were searched (none after an exact search)."""
        if self.units is None or self.exact is None:
            return 0
        rows = np.unique(np.asarray(rows, np.int64))
        rows = rows[~self.exact[rows]]
        if len(rows):
            started = time.perf_counter()
            self.indices[rows], self.distances[rows] = exact_neighbours(self.units, rows, self.indices.shape[1])
            self.exact[rows] = True
            self.repaired += len(rows)
            self.seconds += time.perf_counter() - started
        return len(rows)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """The rows of `features` scaled to unit length (a row of zeros stays zeros)."""
    features = np.asarray(features, np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def nearest_neighbours(features: np.ndarray, count: int = NEIGHBOURS, exact_up_to: int = EXACT_UP_TO) -> Neighbours:
    """The `count` nearest other images of every image (fewer when there are fewer images):
    exact up to `exact_up_to` images, by the graph index above."""
    started = time.perf_counter()
    units = unit_rows(features)
    images, k = len(units), min(count, len(units) - 1)
    if k < 1:
        return Neighbours(np.zeros((images, 0), np.int64), np.zeros((images, 0)), time.perf_counter() - started)
    if images <= exact_up_to:
        indices, distances = exact_neighbours(units, np.arange(images), k)
        return Neighbours(indices, distances, time.perf_counter() - started)
    indices, distances, lost = approximate_neighbours(units, k)
    neighbours = Neighbours(indices, distances, 0.0, "approximate", 0, units, np.zeros(images, bool))
    neighbours.refine(lost)
    neighbours.seconds = time.perf_counter() - started
    return neighbours


def exact_neighbours(units: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest other images of the images at `rows`, compared with every image."""
    from sklearn.neighbors import NearestNeighbors

    # On unit vectors the Euclidean distance d gives the cosine distance d^2 / 2, and scikit-learn's
    # Euclidean search is its fastest.
    distances, indices = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(units).kneighbors(units[rows])
    return _without_self(indices, distances ** 2 / 2, rows, k)


def approximate_neighbours(units: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image's `k` nearest others by faiss's HNSW graph: (indices, distances, the images
    whose search lost its way: it found neither the image itself nor a copy of it)."""
    import faiss

    index = faiss.IndexHNSWFlat(units.shape[1], LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = BUILD_BREADTH
    index.add(units)
    index.hnsw.efSearch = SEARCH_BREADTH
    similarities, indices = index.search(units, k + 1)
    del index
    rows = np.arange(len(units))
    found = (indices == rows[:, None]).any(axis=1) | (similarities[:, 0] >= 1.0 - SAME)
    lost = np.flatnonzero(~found | (indices < 0).any(axis=1))  # -1: the walk found fewer than k + 1
    indices, distances = _without_self(indices.astype(np.int64), 1.0 - similarities, rows, k)
    return indices, distances, lost


def _without_self(indices: np.ndarray, distances: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each image itself from its k + 1 answers: where copies tie at distance 0 it need not
    come first, and where it is missing the farthest answer goes."""
    itself = indices == rows[:, None]
    itself[~itself.any(axis=1), -1] = True
    shape = (len(rows), k)
    return indices[~itself].reshape(shape), np.clip(distances[~itself].reshape(shape), 0.0, 2.0)
