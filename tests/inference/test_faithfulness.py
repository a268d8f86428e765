"""tlcli.inference.faithfulness: the deletion test, on a model whose evidence is known and on
TinyNet taught the fine-placement squares."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import bright_square_images, peak_on_square, square_reading_model
from tlcli.inference.faithfulness import DeletionTest
from tlcli.inference.heatmaps import Heatmap
from tlcli.inference.occlusion import Occlusion
from tlcli.models.saved import load_run_model

SIZE, SQUARE = 32, (6, 18, 8)


def _map_peaking_at(row: int, column: int, class_index: int = 1) -> Heatmap:
    values = np.zeros((16, 16), np.float32)
    values[row, column] = 1
    return Heatmap(class_index, 0.99, values)


def test_a_map_on_the_evidence_passes_and_a_map_elsewhere_fails():
    model = square_reading_model(SIZE, SQUARE)
    images = bright_square_images(2, SIZE, SQUARE)
    test = DeletionTest(Occlusion(model, SIZE))
    on, elsewhere = test(images, [_map_peaking_at(4, 10), _map_peaking_at(13, 1)])  # cells of 2 px

    assert on.faithful and on.score >= 0.9
    assert on.hottest_hidden < 0.01 < on.probability - 0.9  # hiding the square: "bright" no more
    assert not elsewhere.faithful and elsewhere.score <= 0.5  # no better than a random region
    assert elsewhere.hottest_hidden == pytest.approx(elsewhere.probability, abs=1e-4)
    assert on.localised and elsewhere.localised  # some random region hides part of the square


def test_the_region_hidden_is_where_most_of_the_heat_is_not_just_around_the_peak():
    """Occlusion's maps can peak at the edge of the evidence (near the image's border, fewer
    windows cover a cell): a map hot over the square, its single hottest cell just off a corner."""
    model = square_reading_model(SIZE, SQUARE)
    values = np.zeros((16, 16), np.float32)
    values[3:7, 9:13] = 0.9  # over the square (rows 6-13, columns 18-25: cells of 2 px)
    values[2, 8] = 1.0
    (test,) = DeletionTest(Occlusion(model, SIZE))(bright_square_images(1, SIZE, SQUARE), [Heatmap(1, 0.99, values)])

    assert test.faithful and test.hottest_hidden < 0.01


def test_a_flat_map_has_no_hottest_region_and_is_not_faithful():
    model = square_reading_model(SIZE, SQUARE)
    (flat,) = DeletionTest(Occlusion(model, SIZE))(bright_square_images(1, SIZE, SQUARE),
                                                    [Heatmap(1, 0.99, np.zeros((1, 1), np.float32))])
    assert flat.score is None and not flat.faithful and flat.record()["faithfulness"] is None


def test_the_score_separates_maps_on_the_square_from_maps_elsewhere(square_run):
    """On the fine-placement fixture, TinyNet's occlusion maps and the same maps moved by half
    the image: those whose peak is on the square score higher, and are called faithful."""
    run, _, squares = square_run
    model, info = load_run_model(run)
    paths = sorted(squares)
    images = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in paths])
    occlusion = Occlusion(model, info.image_size)
    patch = info.class_names.index("patch")
    _, maps = occlusion(images, [patch] * len(paths))
    moved = [Heatmap(heatmap.class_index, heatmap.probability, np.roll(heatmap.values, (8, 8), axis=(0, 1)))
             for heatmap in maps]
    tests = DeletionTest(occlusion).test(images, [maps, moved])
    size = info.image_size
    on = [peak_on_square(heatmap.peak(size, size), squares[path]) for heatmaps in (maps, moved)
          for heatmap, path in zip(heatmaps, paths)]
    scores = np.array([test.score for found in tests for test in found])
    faithful = np.array([test.faithful for found in tests for test in found])
    on = np.array(on)

    # Measured: 20 maps on the square, mean score 0.98, all faithful; 20 moved maps off it, mean
    # 0.55 (hiding any 24 px of texture costs "patch" something), 4 faithful.
    assert on.sum() >= 18 and (~on).sum() >= 18  # nearly every map on it, nearly every moved map off it
    assert scores[on].mean() >= 0.85 and scores[on].mean() - scores[~on].mean() >= 0.2
    assert faithful[on].mean() >= 0.9 and faithful[~on].mean() <= 0.3
