"""tlcli.audit.duplicates: near-duplicate groups, leakage across splits first."""

from __future__ import annotations

import numpy as np

from tlcli.audit.duplicates import DUPLICATE_SHARE, find_duplicates
from tlcli.audit.neighbours import nearest_neighbours


def scattered(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Features of distinct images: all positive, as pooled ReLU features are."""
    return np.random.default_rng(seed).random((count, size)).astype(np.float32)


def test_copies_are_grouped_and_leakage_across_splits_comes_first():
    features = scattered(50)
    rng = np.random.default_rng(1)
    for copy, original in ((40, 10), (41, 20), (21, 20)):  # 41 and 21 copy 20: one group of three
        features[copy] = features[original] * 1.05 + rng.normal(0, 1e-4, features.shape[1])  # brighter, noisier
    splits = ["train"] * 40 + ["test"] * 10
    splits[21] = "train"

    found = find_duplicates(nearest_neighbours(features), splits)
    assert [group.members for group in found.groups] == [[20, 21, 41], [10, 40]]  # both leak: the larger first
    assert all(group.leakage for group in found.groups) and found.groups[0].splits == ["train", "test"]
    assert found.pairs == 4 and found.groups[0].similarity > found.threshold  # 20-21, 20-41, 21-41, 10-40

    splits[40] = "train"  # the same copy inside one split is a near-duplicate, not leakage
    found = find_duplicates(nearest_neighbours(features), splits)
    assert [group.members for group in found.groups] == [[20, 21, 41], [10, 40]]
    assert not found.groups[1].leakage and len(found.leaking) == 1


def test_the_threshold_is_a_share_of_the_typical_nearest_distance():
    neighbours = nearest_neighbours(scattered(80))
    found = find_duplicates(neighbours, ["train"] * 80)
    assert found.groups == []  # distinct images: nothing is nearly the same
    typical = float(np.median(neighbours.distances[:, 0]))
    assert found.typical_distance == typical
    assert np.isclose(found.threshold, 1.0 - DUPLICATE_SHARE * typical)


def test_byte_identical_copies_are_found_even_when_most_images_are_copies():
    features = np.repeat(scattered(4), [5, 1, 1, 1], axis=0)  # five copies of one image among 8
    found = find_duplicates(nearest_neighbours(features), ["train"] * 8)
    assert [group.members for group in found.groups] == [[0, 1, 2, 3, 4]]
