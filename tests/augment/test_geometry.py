"""The geometric techniques (crop, flip, rotation, zoom, translation) as one warp per image: each
output pixel samples the input through one affine map, fitted here from images of their own
coordinates, whose ranges are the settings'."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import augment_batch, grey_batch, ramp_batch
from tlcli.augment.config import AugmentConfig


def _coordinate_batch(count=32, size=32) -> np.ndarray:
    """Images whose red and green values are 4 times each pixel's x and y."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([x * 4, y * 4, np.full_like(x, 100.0)], -1)
    return np.repeat(image[None], count, axis=0)


def _sampled_maps(result: np.ndarray, margin: int) -> np.ndarray:
    """Per image of a warped `_coordinate_batch`, the affine map (2x3) from each output pixel
    to the input point it shows, fitted on the pixels at least `margin` from the edges."""
    size = result.shape[1]
    y, x = np.mgrid[margin:size - margin, margin:size - margin]
    design = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], axis=1)
    maps = []
    for image in result:
        points = image[margin:size - margin, margin:size - margin, :2].reshape(-1, 2) / 4
        solution, residuals, *_ = np.linalg.lstsq(design, points, rcond=None)
        assert residuals.max() < 1e-3  # one affine map: straight lines stay straight
        maps.append(solution.T)
    return np.array(maps)


@pytest.mark.parametrize("flip, axis", [("horizontal", 2), ("vertical", 1)])
def test_a_flip_mirrors_the_pixels_exactly(flip, axis):
    images = ramp_batch()
    result = augment_batch(AugmentConfig(flip=flip), images)
    mirrored = [np.array_equal(out, np.flip(image, axis - 1)) for out, image in zip(result, images)]
    untouched = [np.array_equal(out, image) for out, image in zip(result, images)]
    assert all(m or u for m, u in zip(mirrored, untouched))
    assert any(mirrored) and any(untouched)  # each image is flipped at random


def test_flip_both_turns_an_image_half_way_or_leaves_it():
    images = ramp_batch()
    result = augment_batch(AugmentConfig(flip="both"), images)
    turned = [np.array_equal(out, image[::-1, ::-1]) for out, image in zip(result, images)]
    untouched = [np.array_equal(out, image) for out, image in zip(result, images)]
    assert all(t or u for t, u in zip(turned, untouched)) and any(turned) and any(untouched)


def test_geometry_at_the_slightest_strength_leaves_images_unchanged():
    """No half-pixel shift or blur creeps in: the warp samples pixel centres exactly."""
    images = ramp_batch(count=8)
    config = AugmentConfig(rotation=1e-6, zoom=1e-6, translation=1e-6, crop=1e-6)
    np.testing.assert_allclose(augment_batch(config, images), images, atol=0.05)


def test_a_translation_moves_a_bright_square_by_up_to_its_fraction_of_the_size():
    images = grey_batch(0.0, size=40)
    images[:, 18:22, 18:22] = 200.0  # a 4x4 square in the middle
    result = augment_batch(AugmentConfig(translation=0.1), images)  # up to 4 pixels either way
    y, x = np.mgrid[0:40, 0:40]
    weights = result[..., 0]
    assert np.allclose(weights.sum(axis=(1, 2)), 16 * 200.0, rtol=1e-3)  # moved whole, not smeared off
    shift_x = (weights * x).sum(axis=(1, 2)) / weights.sum(axis=(1, 2)) - 19.5
    shift_y = (weights * y).sum(axis=(1, 2)) / weights.sum(axis=(1, 2)) - 19.5
    assert np.abs(shift_x).max() <= 4 + 1e-3 and np.abs(shift_y).max() <= 4 + 1e-3
    assert np.abs(shift_x).max() > 3 and np.abs(shift_y).max() > 3  # the range is used
    assert not np.allclose(shift_x, shift_y)  # across and down are drawn apart


CENTRE = np.array([15.5, 15.5, 1.0])  # the centre pixel of a 32x32 `_coordinate_batch`


def _upright_scales(maps: np.ndarray):
    """Each map's scale and the input point shown at the output's centre, after checking that
    the maps neither turn nor stretch one way more than the other."""
    np.testing.assert_allclose(maps[:, 0, 0], maps[:, 1, 1], atol=1e-3)
    np.testing.assert_allclose(maps[:, [0, 1], [1, 0]], 0, atol=1e-3)
    return maps[:, 0, 0], maps @ CENTRE


def test_rotation_turns_by_up_to_its_fraction_of_a_full_turn_about_the_centre():
    maps = _sampled_maps(augment_batch(AugmentConfig(rotation=0.05), _coordinate_batch()), margin=10)
    turn = np.degrees(np.arctan2(maps[:, 1, 0], maps[:, 0, 0]))
    assert np.abs(turn).max() <= 18 + 0.01 and np.abs(turn).max() > 15  # 0.05 x 360 degrees
    np.testing.assert_allclose(np.linalg.det(maps[:, :, :2]), 1, atol=1e-3)  # no zoom
    np.testing.assert_allclose(maps @ CENTRE, 15.5, atol=0.01)


def test_zoom_shows_between_0_8_and_1_2_times_the_image_about_its_centre():
    maps = _sampled_maps(augment_batch(AugmentConfig(zoom=0.2), _coordinate_batch()), margin=7)
    scale, centre = _upright_scales(maps)
    assert scale.min() >= 0.8 - 1e-3 and scale.max() <= 1.2 + 1e-3 and np.ptp(scale) > 0.3
    np.testing.assert_allclose(centre, 15.5, atol=0.01)


def test_crop_shows_a_square_of_at_least_0_7_of_each_side_inside_the_image():
    maps = _sampled_maps(augment_batch(AugmentConfig(crop=0.3), _coordinate_batch()), margin=0)
    scale, centre = _upright_scales(maps)
    assert scale.min() >= 0.7 - 1e-3 and scale.max() <= 1 + 1e-3 and np.ptp(scale) > 0.15
    assert np.all(np.abs(centre - 15.5) <= (1 - scale[:, None]) * 15.5 + 0.01)  # the box fits


def test_every_geometric_technique_together_is_still_one_warp_of_the_image():
    """Five techniques compose into one affine map per image (one resampling, no blur between
    them), whose scale stays within the crop's and the zoom's ranges combined."""
    config = AugmentConfig(rotation=0.03, zoom=0.1, translation=0.05, crop=0.1, flip="horizontal")
    maps = _sampled_maps(augment_batch(config, _coordinate_batch()), margin=11)
    scale = np.sqrt(np.abs(np.linalg.det(maps[:, :, :2])))
    assert scale.min() >= 0.9 * 0.9 - 1e-3 and scale.max() <= 1.1 + 1e-3
    mirrored = np.linalg.det(maps[:, :, :2]) < 0
    assert mirrored.any() and not mirrored.all()  # the flip: a mirror image, for about half of them
