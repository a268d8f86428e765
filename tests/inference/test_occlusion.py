"""tlcli.inference.occlusion: maps made by hiding each part of the image in turn, on a model whose
evidence is known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import bright_square_images, square_reading_model
from tlcli.inference.heatmaps import PREDICTED
from tlcli.inference.occlusion import Occlusion, geometry, log_odds

SIZE, SQUARE = 32, (6, 18, 8)  # the model reads rows 6-13, columns 18-25


@pytest.fixture(scope="module")
def model():
    return square_reading_model(SIZE, SQUARE)


@pytest.mark.parametrize("image_size", [16, 32, 64, 75, 128, 171, 224, 299])
def test_the_windows_cover_every_pixel_at_every_size(image_size):
    grid = geometry(image_size)
    covered = np.zeros((image_size, image_size), bool)
    for row, column in grid.positions():
        covered[row * grid.cell:(row + grid.window) * grid.cell, column * grid.cell:(column + grid.window) * grid.cell] = 1

    assert covered.all()
    assert 15 <= grid.cells <= 17 and len(grid.positions()) <= 169  # a fine map at a bounded cost
    assert grid.window_pixels == pytest.approx(image_size * 5 / 16, abs=grid.cell)


def test_a_64_px_image_is_hidden_by_a_20_px_window_in_4_px_steps():
    grid = geometry(64)
    assert (grid.window_pixels, grid.cell, grid.cells, len(grid.positions())) == (20, 4, 16, 144)


def test_the_log_odds_keep_their_precision_when_a_class_is_nearly_certain():
    logits = np.array([[25.0, 0.0, -3.0], [0.0, 1.0, 2.0]])
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    expected = [25.0 - np.log(np.exp(0.0) + np.exp(-3.0)), 1.0 - np.log(np.exp(0.0) + np.exp(2.0))]

    assert probabilities[0, 0] == 1.0  # float32 rounds it: log p - log(1 - p) would be infinite
    np.testing.assert_allclose(log_odds(probabilities, np.array([0, 1]), multi_label=False), expected, rtol=1e-4)
    sigmoid = np.array([[0.8, 0.1]], np.float32)
    np.testing.assert_allclose(log_odds(sigmoid, np.array([1]), multi_label=True), [np.log(0.1 / 0.9)], rtol=1e-5)


def test_the_map_is_hottest_on_the_square_the_model_reads(model):
    images = bright_square_images(3, SIZE, SQUARE)
    probabilities, heatmaps = Occlusion(model, SIZE)(images, [PREDICTED] * 3)

    np.testing.assert_allclose(probabilities, np.asarray(model(images)), atol=1e-6)
    top, left, side = SQUARE
    for heatmap in heatmaps:
        assert heatmap.class_index == 1 and heatmap.values.shape == (16, 16)
        peak = heatmap.peak(SIZE, SIZE)
        assert top <= peak["y"] < top + side and left <= peak["x"] < left + side
        # Far from the square, hiding costs nothing: the map's coldest quarter.
        assert heatmap.values[12:, :4].max() == pytest.approx(0, abs=1e-6)


def test_several_classes_of_a_batch_are_mapped_as_each_would_be_alone(model):
    images = bright_square_images(2, SIZE, SQUARE, seed=1)
    occlusion = Occlusion(model, SIZE)
    _, (first, second) = occlusion.maps(images, [[PREDICTED, PREDICTED], [0, 0]])

    for together, alone in zip((first, second), (occlusion(images, [PREDICTED] * 2)[1], occlusion(images, [0, 0])[1])):
        for one, other in zip(together, alone):
            assert one.class_index == other.class_index
            np.testing.assert_allclose(one.values, other.values, atol=1e-6)
