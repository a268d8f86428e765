"""The augmenter: what each photometric technique does to a batch, and that the augmentation repeats
under a seed, changes every epoch and never ends up in a saved model. Flips and the other geometric
techniques (one warp) are test_geometry.py."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import TINY_TRAIN, augment_batch, grey_batch, ramp_batch, runner
from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import PRESETS, STRENGTHS, AugmentConfig, resolve_augment
from tlcli.cli import app


def test_same_seed_gives_the_same_batch_and_another_seed_another():
    images = ramp_batch(count=8, size=32)
    first, again = augment_batch(PRESETS["heavy"], images, seed=1), augment_batch(PRESETS["heavy"], images, seed=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, augment_batch(PRESETS["heavy"], images, seed=2), atol=1)


def test_zero_strength_changes_nothing_and_skips_the_step(colour_dataset):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset

    zeroed = resolve_augment("heavy", {name: 0.0 for name in STRENGTHS} | {"flip": "none"})
    assert zeroed.is_identity and build_augmenter(zeroed, 0) is None
    samples = load_dataset(colour_dataset).split("train")
    plain = [b[0].numpy() for b in image_dataset(samples, 16, 8)]
    zero = [b[0].numpy() for b in image_dataset(samples, 16, 8, augment=build_augmenter(zeroed, 0))]
    np.testing.assert_array_equal(np.concatenate(plain), np.concatenate(zero))


def test_brightness_shifts_each_image_evenly_within_its_range():
    result = augment_batch(AugmentConfig(brightness=0.2), grey_batch())
    shifts = result.reshape(len(result), -1) - 128.0
    assert np.allclose(shifts, shifts[:, :1], atol=1e-3)  # one shift per image, every pixel
    assert np.abs(shifts).max() <= 0.2 * 255 + 1e-3
    assert shifts[:, 0].std() > 5  # and the shifts vary between images


def test_brightness_stays_inside_the_pixel_range():
    bright = augment_batch(AugmentConfig(brightness=1.0), grey_batch(250.0))
    dark = augment_batch(AugmentConfig(brightness=1.0), grey_batch(5.0))
    assert bright.min() >= 0 and bright.max() <= 255 and dark.min() >= 0 and dark.max() <= 255


def test_noise_has_the_requested_standard_deviation():
    result = augment_batch(AugmentConfig(noise=0.04), grey_batch(count=8, size=32))
    assert np.std(result - 128.0) == pytest.approx(0.04 * 255, rel=0.05)
    assert abs(np.mean(result - 128.0)) < 0.5


def test_saturation_changes_the_saturation_and_keeps_the_hue():
    orange = np.tile(np.array([200.0, 150.0, 100.0], np.float32), (32, 4, 4, 1))
    result = augment_batch(AugmentConfig(saturation=1.0), orange)[:, 0, 0]
    assert np.allclose(result[:, 0], 200, atol=0.5)  # the value (brightest channel) stays
    assert np.allclose(result[:, 1], (result[:, 0] + result[:, 2]) / 2, atol=0.5)  # so does the hue
    spread = result[:, 0] - result[:, 2]
    assert spread.min() < 60 and spread.max() > 140  # from greyer to fully saturated (200, 100, 0)


def test_hue_turns_the_colour_and_keeps_saturation_and_value():
    orange = np.tile(np.array([200.0, 150.0, 100.0], np.float32), (32, 4, 4, 1))
    result = augment_batch(AugmentConfig(hue=0.5), orange)[:, 0, 0]
    assert np.allclose(result.max(axis=1), 200, atol=1) and np.allclose(result.min(axis=1), 100, atol=1)
    assert (np.abs(result - orange[0, 0, 0]).max(axis=1) > 20).sum() > 16


def test_contrast_scales_each_image_about_its_mean_within_its_range():
    images = ramp_batch() * 0.5 + 60  # room either side, so nothing is clipped
    result = augment_batch(AugmentConfig(contrast=0.3), images)
    mean = images.mean(axis=(1, 2), keepdims=True)
    factors = ((result - mean) / (images - mean + 1e-6))[:, 5, 3, 0]
    assert np.allclose(result.mean(axis=(1, 2)), mean[:, 0, 0], atol=0.1)
    assert factors.min() >= 0.7 - 1e-3 and factors.max() <= 1.3 + 1e-3 and factors.std() > 0.05


@pytest.mark.parametrize("name", [name for name in STRENGTHS if name not in ("brightness", "noise")])
def test_every_technique_changes_images_and_keeps_shape_and_range(name):
    images = ramp_batch(count=8)
    config = AugmentConfig(**{name: 0.5 if name != "zoom" else 0.3})
    result = augment_batch(config, images)
    assert result.shape == images.shape and result.dtype == np.float32
    assert result.min() >= 0 and result.max() <= 255
    assert sum(not np.allclose(out, image, atol=1) for out, image in zip(result, images)) >= 6


def test_augmentation_repeats_under_a_seed_and_changes_every_epoch(colour_dataset):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import epoch_counter, image_dataset

    samples = load_dataset(colour_dataset).split("train")

    def epochs(seed, numbers=(0, 1)):
        epoch = epoch_counter()
        dataset = image_dataset(samples, 16, 4, shuffle=True, seed=seed, epoch=epoch,
                                augment=build_augmenter(PRESETS["heavy"], seed))
        result = {}
        for number in numbers:
            epoch.assign(number)
            result[number] = np.concatenate([b[0].numpy() for b in dataset])
        return result

    first, again, other = epochs(1), epochs(1, numbers=(1, 0)), epochs(2)
    np.testing.assert_array_equal(first[0], again[0])  # parallel batches, same images
    np.testing.assert_array_equal(first[1], again[1])  # an epoch is the same whenever it is read
    assert not np.array_equal(first[0], first[1])  # each epoch sees new variants
    assert not np.array_equal(first[0], other[0])


def test_a_model_trained_with_augmentation_saves_without_it_and_predicts_deterministically(colour_dataset, tmp_path):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset
    from tlcli.models.saved import load_run_model

    result = runner.invoke(app, ["train", str(colour_dataset), *map(str, TINY_TRAIN), "--epochs", "1", "--augment",
                                 "heavy", "--dense", "8", "--dropout", "0.2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and "nan" not in history[1]
    reloaded, info = load_run_model(tmp_path / "run")
    assert not any(type(layer).__name__.startswith("Random") for layer in reloaded._flatten_layers())
    images = np.concatenate([b[0].numpy() for b in image_dataset(load_dataset(colour_dataset).split("val"), 32, 16)])
    first, second = reloaded.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    np.testing.assert_array_equal(first, second)  # no augmentation or dropout at inference
