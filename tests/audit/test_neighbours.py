"""tlcli.audit.neighbours: every image's nearest other images by cosine distance."""

from __future__ import annotations

import numpy as np

from tlcli.audit.duplicates import find_duplicates
from tlcli.audit.neighbours import nearest_neighbours
from tlcli.audit.outliers import EXACT_FARTHEST, find_outliers


def test_the_neighbours_are_the_nearest_by_cosine_distance_never_the_image_itself():
    rng = np.random.default_rng(0)
    features = rng.random((60, 12)).astype(np.float32)
    found = nearest_neighbours(features, count=5)

    units = features / np.linalg.norm(features, axis=1, keepdims=True)
    distances = 1.0 - units @ units.T  # the oracle: every pair
    np.fill_diagonal(distances, np.inf)
    expected = np.sort(distances, axis=1)[:, :5]
    np.testing.assert_allclose(found.distances, expected, atol=1e-5)
    assert not np.any(found.indices == np.arange(60)[:, None])


def test_identical_images_are_each_others_neighbours_at_distance_zero():
    rng = np.random.default_rng(1)
    features = rng.random((10, 8)).astype(np.float32)
    features[[3, 7]] = features[5]  # three copies: where they tie, an image need not come first
    found = nearest_neighbours(features, count=3)
    for copy in (3, 5, 7):
        assert set(found.indices[copy, :2]) == {3, 5, 7} - {copy}
        np.testing.assert_allclose(found.distances[copy, :2], 0.0, atol=1e-6)


def test_a_single_image_has_no_neighbour():
    found = nearest_neighbours(np.ones((1, 4), np.float32))
    assert found.indices.shape == (1, 0) and len(found.nearest) == 0



def clustered_with_copies(images: int = 3000, size: int = 48, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Features of `images` images in 30 clusters, non-negative as pooled features are, with 20
    near copies (brighter, a little noise), 10 exact copies and a stray (image 7) far from every
    cluster: (the features, each (original, copy))."""
    rng = np.random.default_rng(seed)
    centres = rng.random((30, size)) * 2
    features = (centres[rng.integers(0, 30, images)] + rng.normal(0, 0.15, (images, size))).clip(0).astype(np.float32)
    chosen = rng.choice(np.arange(8, images), 60, replace=False)
    originals, copies = chosen[:30], chosen[30:]
    features[copies[:20]] = features[originals[:20]] * 1.05 + rng.normal(0, 0.005, (20, size))
    features[copies[20:]] = features[originals[20:]]
    features[7] = rng.random(size) * 6
    return features, list(zip(originals.tolist(), copies.tolist()))


def test_the_approximate_search_finds_the_same_duplicates_and_outliers_as_the_exact_one():
    """Forced to the graph index by a small `exact_up_to`, 3,000 images give the very groups of
    copies and flagged outliers of the exact search, and the farthest images' scores are exact."""
    features, planted = clustered_with_copies()
    splits = ["train"] * 2000 + ["test"] * 1000
    exact = nearest_neighbours(features)
    approximate = nearest_neighbours(features, exact_up_to=1000)
    assert (exact.search, approximate.search) == ("exact", "approximate")

    found, expected = find_duplicates(approximate, splits), find_duplicates(exact, splits)
    groups = sorted(group.members for group in expected.groups)
    assert len(groups) == len(planted) and all([original, copy] in groups or [copy, original] in groups
                                               for original, copy in planted)
    assert sorted(group.members for group in found.groups) == groups and found.pairs == expected.pairs
    assert np.isclose(found.threshold, expected.threshold, atol=1e-6)

    far, expected_far = find_outliers(approximate), find_outliers(exact)
    assert far.flagged.tolist() == expected_far.flagged.tolist() and far.flagged[0] == 7
    top = expected_far.ranked[:EXACT_FARTHEST]
    assert far.ranked[:EXACT_FARTHEST].tolist() == top.tolist()
    np.testing.assert_allclose(far.scores[top], expected_far.scores[top], atol=1e-5)
