"""tlcli.audit.neighbours: every image's nearest other images by cosine distance."""

from __future__ import annotations

import numpy as np

from tlcli.audit.neighbours import nearest_neighbours


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
