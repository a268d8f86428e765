"""Test-time augmentation's views and the one-pass multi-view classifier, against NumPy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.models.tta import VIEW_SETS, MultiViewClassifier, View, view_images

SIZE = 10


@pytest.fixture(scope="module")
def lopsided_model():
    """Pixels -> softmax through one dense layer of random weights: nothing like flip-invariant."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    scaled = keras.layers.Rescaling(1 / 255)(inputs)
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(scaled))
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resampling with pixel centres aligned (as Pillow and TensorFlow resize), by hand."""
    def taps(source: int, target: int):
        position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, source - 1), position - low

    top, bottom, down = taps(image.shape[0], height)
    left, right, across = taps(image.shape[1], width)
    rows = image[top] * (1 - down)[:, None, None] + image[bottom] * down[:, None, None]
    return rows[:, left] * (1 - across)[None, :, None] + rows[:, right] * across[None, :, None]


def test_the_view_sets_are_the_documented_ones():
    flip, crops = VIEW_SETS["flip"], VIEW_SETS["crops"]
    assert [view.name for view in flip.views] == ["image", "image, mirrored"]
    assert len(crops.views) == 10 and crops.views[:2] == flip.views  # view 0 is always the image
    assert {view.corner for view in crops.views} == {None, "top-left", "top-right", "bottom-left", "bottom-right"}
    assert sum(view.mirrored for view in crops.views) == 5
    assert flip.describe() == "flip, 2 views: the image and its horizontal mirror"


def test_views_are_mirrors_and_corner_crops_resized_back(images):
    mirrored = view_images(images, View(mirrored=True)).numpy()
    np.testing.assert_array_equal(mirrored, images[:, :, ::-1])
    crop = 9  # 90% of 10 pixels
    for corner, rows, columns in (("top-left", slice(0, crop), slice(0, crop)),
                                  ("bottom-right", slice(SIZE - crop, SIZE), slice(SIZE - crop, SIZE))):
        view = view_images(images, View(corner)).numpy()
        by_hand = np.stack([_bilinear(image[rows, columns], SIZE, SIZE) for image in images])
        np.testing.assert_allclose(view, by_hand, atol=1e-3)
        np.testing.assert_allclose(view_images(images, View(corner, mirrored=True)).numpy(), by_hand[:, :, ::-1],
                                   atol=1e-3)


@pytest.mark.parametrize("view_set", list(VIEW_SETS))
def test_each_image_gets_the_model_probabilities_of_each_of_its_views(lopsided_model, images, view_set):
    """One pass over views x batch images, split back per image: nothing mixed up between images."""
    per_view = MultiViewClassifier(lopsided_model, view_set, average=False)(images).numpy()
    views = VIEW_SETS[view_set].views
    assert per_view.shape == (3, len(views), 4)
    for number, view in enumerate(views):
        alone = lopsided_model(view_images(images, view), training=False).numpy()
        np.testing.assert_allclose(per_view[:, number], alone, atol=1e-6)
    np.testing.assert_allclose(per_view[:, 0], lopsided_model(images).numpy(), atol=1e-6)
    assert np.abs(per_view[:, 1] - per_view[:, 0]).max() > 1e-3  # the mirror does change the answer

    averaged = MultiViewClassifier(lopsided_model, view_set, average=True)
    assert averaged.output_shape == (None, 4)
    np.testing.assert_allclose(averaged(images).numpy(), per_view.mean(axis=1), atol=1e-6)


def test_flip_averages_the_image_and_its_mirror(lopsided_model, images):
    averaged = MultiViewClassifier(lopsided_model, "flip", average=True)(images).numpy()
    by_hand = (lopsided_model(images).numpy() + lopsided_model(images[:, :, ::-1].copy()).numpy()) / 2
    np.testing.assert_allclose(averaged, by_hand, atol=1e-6)
    np.testing.assert_allclose(averaged.sum(axis=1), 1, atol=1e-5)
