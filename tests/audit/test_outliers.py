"""tlcli.audit.outliers: images far from every other, ranked, the clear ones flagged."""

from __future__ import annotations

import numpy as np

from tlcli.audit.neighbours import nearest_neighbours
from tlcli.audit.outliers import find_outliers


def test_a_stray_is_ranked_first_and_flagged_and_the_rest_are_not():
    rng = np.random.default_rng(0)
    centres = rng.random((3, 16))
    features = (centres[rng.integers(0, 3, 90)] + rng.normal(0, 0.02, (90, 16))).astype(np.float32)
    features[17] = rng.random(16) * 3  # no class's neighbourhood
    found = find_outliers(nearest_neighbours(features))
    assert found.ranked[0] == 17 and found.flagged.tolist() == [17]
    assert found.scores[17] > found.cutoff > np.median(found.scores)


def test_images_all_alike_flag_nothing():
    features = np.ones((12, 5), np.float32)
    found = find_outliers(nearest_neighbours(features))
    assert len(found.flagged) == 0 and found.cutoff == float("inf") and len(found.ranked) == 12
