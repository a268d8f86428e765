"""tlcli.inference.heatmaps: a map's peak, and maps drawn over images with Pillow, pictures and contact sheets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tlcli.inference.heatmaps import (
    BLEND,
    CAPTION_LINE,
    DISPLAY_SIDE,
    GAP,
    TILE_SIDE,
    TILE_CAPTION_LINES,
    Heatmap,
    Panel,
    contact_sheet_png,
    explanation_png,
    explanations_png,
    fit,
    overlay,
)

# Grad-CAM's "jet" colours at the two ends: dark blue for 0 (cold), dark red for 1 (hot).
COLD, HOT = np.array([0, 0, 0.5]), np.array([0.5, 0, 0])


def _pixels(path_or_bytes) -> np.ndarray:
    with Image.open(io.BytesIO(path_or_bytes)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _hot_top_right(peak=None, image_size=(40, 20)) -> Panel:
    values = np.zeros((2, 2), np.float32)
    values[0, 1] = 1.0
    return Panel("cat 90.0%", values, peak, image_size)


def test_the_map_is_stretched_over_the_whole_image_whatever_its_shape():
    black = Image.new("RGB", (80, 40))
    pixels = np.asarray(overlay(black, _hot_top_right()), np.float32)

    assert pixels.shape == (40, 80, 3)
    np.testing.assert_allclose(pixels[2, 77], np.rint(BLEND * 255 * HOT), atol=1)  # the hot cell's corner
    np.testing.assert_allclose(pixels[37, 2], np.rint(BLEND * 255 * COLD), atol=1)  # a cold cell's corner
    np.testing.assert_allclose(pixels[37, 77], np.rint(BLEND * 255 * COLD), atol=1)


def test_the_image_shows_through_the_map_in_the_blended_share():
    grey = Image.new("RGB", (30, 30), (200, 200, 200))
    cold = Panel("cold", np.zeros((3, 3), np.float32), None, (30, 30))
    pixels = np.asarray(overlay(grey, cold), np.float32)
    np.testing.assert_allclose(pixels, np.broadcast_to(np.rint((1 - BLEND) * 200 + BLEND * 255 * COLD), (30, 30, 3)),
                               atol=1)


def test_the_peak_is_ringed_where_it_lies_in_the_image_shown():
    black = Image.new("RGB", (80, 40))
    # The peak in the pixels of the image on disk (40 x 20): at (30, 5), so (60, 10) in the 80 x 40 shown.
    ringed = np.asarray(overlay(black, _hot_top_right({"x": 30, "y": 5})))
    plain = np.asarray(overlay(black, _hot_top_right()))
    white = np.argwhere((ringed == 255).all(axis=2))

    assert len(white) and not (plain == 255).all(axis=2).any()
    distances = np.hypot(white[:, 1] - 60, white[:, 0] - 10)
    assert distances.min() >= 2 and distances.max() <= 6  # a ring of radius 4 about the peak, not a dot


@pytest.mark.parametrize("size, within, expected", [
    ((300, 150), (160, 160), (160, 80)),  # shrunk to fit, keeping its shape
    ((20, 10), (160, 160), (160, 80)),  # enlarged
    ((50, 400), (256, 256), (32, 256)),
])
def test_fit_keeps_the_images_shape(size, within, expected):
    assert fit(Image.new("RGB", size), *within).size == expected


def test_a_picture_is_the_image_then_the_image_under_each_map_side_by_side():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (50, 100, 3), dtype=np.uint8)
    panels = [_hot_top_right({"x": 75, "y": 12}, (100, 50)), _hot_top_right(None, (100, 50))]
    picture = _pixels(explanation_png(pixels, "photo.jpg", panels))

    shown = (DISPLAY_SIDE, DISPLAY_SIDE // 2)  # the longer side at DISPLAY_SIDE
    top = GAP + CAPTION_LINE + GAP
    assert picture.shape == (top + shown[1] + GAP, GAP + 3 * (shown[0] + GAP), 3)
    first = picture[top: top + shown[1], GAP: GAP + shown[0]]
    expected = np.asarray(fit(Image.fromarray(pixels), *shown))
    np.testing.assert_array_equal(first, expected)  # the image itself, unmarked
    second = picture[top: top + shown[1], 2 * GAP + shown[0]: 2 * GAP + 2 * shown[0]]
    assert not np.array_equal(second, expected)  # under its map


def test_a_caption_of_several_lines_is_shown_whole_above_its_map():
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    one_line = _pixels(explanation_png(pixels, "x.png", [_hot_top_right()]))
    note = "hiding its hottest region costs the class no more than hiding a random one"  # wider than a panel
    caption = Panel(f"cat 90.0%, faithfulness 0.31\n{note}", _hot_top_right().values, None, (64, 64))
    three_lines = _pixels(explanation_png(pixels, "x.png", [caption]))

    assert three_lines.shape[0] == one_line.shape[0] + 2 * CAPTION_LINE  # the note, broken into two lines
    header = three_lines[: GAP + 3 * CAPTION_LINE, GAP + DISPLAY_SIDE + GAP:]
    lines = [header[GAP + line * CAPTION_LINE: GAP + (line + 1) * CAPTION_LINE] for line in range(3)]
    assert all((line < 128).any() for line in lines)  # text on each of the three lines
    np.testing.assert_array_equal(three_lines[-(DISPLAY_SIDE + GAP):], one_line[-(DISPLAY_SIDE + GAP):])  # same panels


def test_several_pictures_stack_one_below_the_other():
    rng = np.random.default_rng(1)
    wide, tall = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 80, 3), (80, 40, 3)))
    one_each = [_pixels(explanation_png(pixels, "x", [_hot_top_right()])) for pixels in (wide, tall)]
    sheet = _pixels(explanations_png([(wide, "x", [_hot_top_right()]), (tall, "x", [_hot_top_right()])]))

    assert sheet.shape[0] == one_each[0].shape[0] + one_each[1].shape[0]
    assert sheet.shape[1] == max(picture.shape[1] for picture in one_each)
    np.testing.assert_array_equal(sheet[: one_each[0].shape[0], : one_each[0].shape[1]], one_each[0])


def test_a_contact_sheet_is_a_grid_of_tiles_eight_to_a_row():
    rng = np.random.default_rng(2)
    tiles = [(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8), _hot_top_right(), f"{n}.png") for n in range(10)]
    sheet = _pixels(contact_sheet_png(tiles))

    cell_height = TILE_SIDE + (1 + TILE_CAPTION_LINES) * CAPTION_LINE + GAP  # the name, then the caption
    assert sheet.shape == (GAP + 2 * (cell_height + GAP), GAP + 8 * (TILE_SIDE + GAP), 3)
    second_row = GAP + cell_height + GAP
    assert sheet[second_row: second_row + TILE_SIDE, GAP: GAP + TILE_SIDE].std() > 10  # the ninth tile
    empty = sheet[second_row:, GAP + 2 * (TILE_SIDE + GAP):]  # no eleventh or twelfth tile
    assert (empty == 255).all()

    few = _pixels(contact_sheet_png(tiles[:3]))
    assert few.shape[1] == GAP + 3 * (TILE_SIDE + GAP)  # no wider than its tiles


def test_the_peak_is_the_hottest_cell_in_the_images_own_pixels():
    values = np.zeros((4, 4), np.float32)
    values[0, 3] = 1.0
    assert Heatmap(0, 0.9, values).peak(200, 100) == {"x": 175, "y": 12}
    assert Heatmap(0, 0.9, np.zeros((1, 1), np.float32)).peak(200, 100) is None  # flat: nowhere in particular
