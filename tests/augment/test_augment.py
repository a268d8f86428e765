"""Augmentation: what each technique does, presets and overrides, the preview grid, training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import runner, write_image
from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.settings import (
    PRESETS,
    STRENGTHS,
    AugmentConfig,
    augmentation_from_options,
    overrides_from_flags,
    resolve_augment,
)
from tlcli.cli import app
from tlcli.errors import TlcliError
from tlcli.settings import load_toml


def _augment(config: AugmentConfig, images: np.ndarray, seed: int = 0) -> np.ndarray:
    import tensorflow as tf

    augmenter = build_augmenter(config, seed)
    return augmenter(tf.constant(images), tf.constant([7, seed], tf.int64)).numpy()


def _ramp_batch(count=32, size=16) -> np.ndarray:
    """Images with no symmetry: every pixel differs from its mirror images."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 15.0, y * 15.0, (x * 3 + y * 7) % 255], -1).astype(np.float32)
    return np.repeat(image[None], count, axis=0)


def _grey_batch(value=128.0, count=32, size=16) -> np.ndarray:
    return np.full((count, size, size, 3), value, np.float32)


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


# --- what each technique does -------------------------------------------------------------------


@pytest.mark.parametrize("flip, axis", [("horizontal", 2), ("vertical", 1)])
def test_a_flip_mirrors_the_pixels_exactly(flip, axis):
    images = _ramp_batch()
    result = _augment(AugmentConfig(flip=flip), images)
    mirrored = [np.array_equal(out, np.flip(image, axis - 1)) for out, image in zip(result, images)]
    untouched = [np.array_equal(out, image) for out, image in zip(result, images)]
    assert all(m or u for m, u in zip(mirrored, untouched))
    assert any(mirrored) and any(untouched)  # each image is flipped at random


def test_flip_both_turns_an_image_half_way_or_leaves_it():
    images = _ramp_batch()
    result = _augment(AugmentConfig(flip="both"), images)
    turned = [np.array_equal(out, image[::-1, ::-1]) for out, image in zip(result, images)]
    untouched = [np.array_equal(out, image) for out, image in zip(result, images)]
    assert all(t or u for t, u in zip(turned, untouched)) and any(turned) and any(untouched)


def test_geometry_at_the_slightest_strength_leaves_images_unchanged():
    """No half-pixel shift or blur creeps in: the warp samples pixel centres exactly."""
    images = _ramp_batch(count=8)
    config = AugmentConfig(rotation=1e-6, zoom=1e-6, translation=1e-6, crop=1e-6)
    np.testing.assert_allclose(_augment(config, images), images, atol=0.05)


def test_a_translation_moves_a_bright_square_by_up_to_its_fraction_of_the_size():
    images = _grey_batch(0.0, size=40)
    images[:, 18:22, 18:22] = 200.0  # a 4x4 square in the middle
    result = _augment(AugmentConfig(translation=0.1), images)  # up to 4 pixels either way
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
    maps = _sampled_maps(_augment(AugmentConfig(rotation=0.05), _coordinate_batch()), margin=10)
    turn = np.degrees(np.arctan2(maps[:, 1, 0], maps[:, 0, 0]))
    assert np.abs(turn).max() <= 18 + 0.01 and np.abs(turn).max() > 15  # 0.05 x 360 degrees
    np.testing.assert_allclose(np.linalg.det(maps[:, :, :2]), 1, atol=1e-3)  # no zoom
    np.testing.assert_allclose(maps @ CENTRE, 15.5, atol=0.01)


def test_zoom_shows_between_0_8_and_1_2_times_the_image_about_its_centre():
    maps = _sampled_maps(_augment(AugmentConfig(zoom=0.2), _coordinate_batch()), margin=7)
    scale, centre = _upright_scales(maps)
    assert scale.min() >= 0.8 - 1e-3 and scale.max() <= 1.2 + 1e-3 and np.ptp(scale) > 0.3
    np.testing.assert_allclose(centre, 15.5, atol=0.01)


def test_crop_shows_a_square_of_at_least_0_7_of_each_side_inside_the_image():
    maps = _sampled_maps(_augment(AugmentConfig(crop=0.3), _coordinate_batch()), margin=0)
    scale, centre = _upright_scales(maps)
    assert scale.min() >= 0.7 - 1e-3 and scale.max() <= 1 + 1e-3 and np.ptp(scale) > 0.15
    assert np.all(np.abs(centre - 15.5) <= (1 - scale[:, None]) * 15.5 + 0.01)  # the box fits


def test_same_seed_gives_the_same_batch_and_another_seed_another():
    images = _ramp_batch(count=8, size=32)
    first, again = _augment(PRESETS["heavy"], images, seed=1), _augment(PRESETS["heavy"], images, seed=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, _augment(PRESETS["heavy"], images, seed=2), atol=1)


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
    result = _augment(AugmentConfig(brightness=0.2), _grey_batch())
    shifts = result.reshape(len(result), -1) - 128.0
    assert np.allclose(shifts, shifts[:, :1], atol=1e-3)  # one shift per image, every pixel
    assert np.abs(shifts).max() <= 0.2 * 255 + 1e-3
    assert shifts[:, 0].std() > 5  # and the shifts vary between images


def test_brightness_stays_inside_the_pixel_range():
    bright = _augment(AugmentConfig(brightness=1.0), _grey_batch(250.0))
    dark = _augment(AugmentConfig(brightness=1.0), _grey_batch(5.0))
    assert bright.min() >= 0 and bright.max() <= 255 and dark.min() >= 0 and dark.max() <= 255


def test_noise_has_the_requested_standard_deviation():
    result = _augment(AugmentConfig(noise=0.04), _grey_batch(count=8, size=32))
    assert np.std(result - 128.0) == pytest.approx(0.04 * 255, rel=0.05)
    assert abs(np.mean(result - 128.0)) < 0.5


def test_saturation_changes_the_saturation_and_keeps_the_hue():
    orange = np.tile(np.array([200.0, 150.0, 100.0], np.float32), (32, 4, 4, 1))
    result = _augment(AugmentConfig(saturation=1.0), orange)[:, 0, 0]
    assert np.allclose(result[:, 0], 200, atol=0.5)  # the value (brightest channel) stays
    assert np.allclose(result[:, 1], (result[:, 0] + result[:, 2]) / 2, atol=0.5)  # so does the hue
    spread = result[:, 0] - result[:, 2]
    assert spread.min() < 60 and spread.max() > 140  # from greyer to fully saturated (200, 100, 0)


def test_hue_turns_the_colour_and_keeps_saturation_and_value():
    orange = np.tile(np.array([200.0, 150.0, 100.0], np.float32), (32, 4, 4, 1))
    result = _augment(AugmentConfig(hue=0.5), orange)[:, 0, 0]
    assert np.allclose(result.max(axis=1), 200, atol=1) and np.allclose(result.min(axis=1), 100, atol=1)
    assert (np.abs(result - orange[0, 0, 0]).max(axis=1) > 20).sum() > 16


def test_contrast_scales_each_image_about_its_mean_within_its_range():
    images = _ramp_batch() * 0.5 + 60  # room either side, so nothing is clipped
    result = _augment(AugmentConfig(contrast=0.3), images)
    mean = images.mean(axis=(1, 2), keepdims=True)
    factors = ((result - mean) / (images - mean + 1e-6))[:, 5, 3, 0]
    assert np.allclose(result.mean(axis=(1, 2)), mean[:, 0, 0], atol=0.1)
    assert factors.min() >= 0.7 - 1e-3 and factors.max() <= 1.3 + 1e-3 and factors.std() > 0.05


@pytest.mark.parametrize("name", [name for name in STRENGTHS if name not in ("brightness", "noise")])
def test_every_technique_changes_images_and_keeps_shape_and_range(name):
    images = _ramp_batch(count=8)
    config = AugmentConfig(**{name: 0.5 if name != "zoom" else 0.3})
    result = _augment(config, images)
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


# --- presets, TOML and flags --------------------------------------------------------------------


def test_flags_override_the_toml_table_which_overrides_the_preset():
    section = {"augment": "light", "rotation": 0.2, "noise": 0.05}
    config = resolve_augment(None, {"noise": 0.0}, section)
    assert config.rotation == 0.2  # from the table
    assert config.noise == 0.0  # the flag wins
    assert config.brightness == PRESETS["light"].brightness  # from the table's preset
    assert resolve_augment("heavy", {}, section).zoom == PRESETS["heavy"].zoom  # --augment wins
    assert resolve_augment(None, {}, None).is_identity  # nothing asked: no augmentation


def test_overrides_keep_only_the_flags_given():
    assert overrides_from_flags(rotation=None, flip="vertical", noise=0.0) == {"flip": "vertical", "noise": 0.0}


def test_the_config_file_is_read_from_its_augmentation_table(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[augmentation]\naugment = "standard"\nflip = "none"\nhue = 0.1\n')
    config = augmentation_from_options(None, {"hue": None, "zoom": 0.3}, path)
    assert (config.flip, config.hue, config.zoom) == ("none", 0.1, 0.3)
    assert config.rotation == PRESETS["standard"].rotation


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: AugmentConfig(rotation=-0.1), ["--rotation -0.1", "[0, 0.5]"]),
        (lambda: AugmentConfig(noise=2), ["--noise 2", "[0, 1.0]"]),
        (lambda: AugmentConfig(flip="diagonal"), ["--flip 'diagonal'", "horizontal"]),
        (lambda: resolve_augment("extreme", {}), ["--augment 'extreme'", "standard"]),
        (lambda: resolve_augment(None, {}, {"rotate": 0.1}), ["rotate", "rotation"]),
        (lambda: resolve_augment(None, {}, {"zoom": "lots"}), ["--zoom 'lots'", "number"]),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_value(make, words):
    with pytest.raises(TlcliError) as raised:
        make()
    message = str(raised.value)
    assert "\n" not in message and all(word in message for word in words)


def test_bad_config_files_are_one_line_errors(tmp_path):
    with pytest.raises(TlcliError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[augmentation\nrotation = ")
    with pytest.raises(TlcliError, match="not valid TOML") as raised:
        load_toml(broken)
    assert "\n" not in str(raised.value)


# --- the preview grid ---------------------------------------------------------------------------


def test_preview_grid_has_the_requested_cells_and_unchanged_originals(colour_dataset, tmp_path):
    from tlcli.augment.preview import cell_origin

    out = tmp_path / "preview.png"
    result = runner.invoke(app, ["augment", str(colour_dataset), "--out", str(out), "--samples", "4",
                                 "--variants", "3", "--image-size", "20", "--augment", "heavy"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape[:2] == tuple(reversed(cell_origin(4, 4, 20)))  # 4 rows, original + 3
    # Rows go through the classes in turn; the originals are the training images, untouched
    # (20x20 PNGs at --image-size 20 decode exactly).
    train = {path.name: np.asarray(Image.open(path).convert("RGB"))
             for path in (colour_dataset / "train").rglob("*.png")}
    for row, class_name in enumerate(["blue", "green", "red", "blue"]):
        x, y = cell_origin(row, 0, 20)
        original = grid[y:y + 20, x:x + 20]
        matches = [name for name, pixels in train.items() if np.array_equal(pixels, original)]
        assert len(matches) == 1 and matches[0].startswith(class_name)
        for column in (1, 2, 3):
            x, y = cell_origin(row, column, 20)
            assert not np.array_equal(grid[y:y + 20, x:x + 20], original)


def test_preview_is_reproducible_and_accepts_a_single_image(tmp_path):
    image = write_image(tmp_path / "photo.png", size=(24, 24))
    outputs = []
    for name in ("a.png", "b.png"):
        result = runner.invoke(app, ["augment", str(image), "--out", str(tmp_path / name), "--variants", "2",
                                     "--image-size", "24", "--seed", "3"])
        assert result.exit_code == 0, result.output
        outputs.append(np.asarray(Image.open(tmp_path / name)))
    np.testing.assert_array_equal(*outputs)
    from tlcli.augment.preview import cell_origin

    assert outputs[0].shape[:2] == tuple(reversed(cell_origin(1, 3, 24)))  # one row, 1 + 2 columns


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["--augment", "extreme"], "--augment 'extreme' is not a preset"),
        (["--rotation", "-0.2"], "--rotation -0.2 is out of range"),
        (["--samples", "0"], "--samples 0 is too small"),
        (["--image-size", "5000"], "--image-size 5000 is too large for a preview (maximum 1024"),
        (["--out", "{tmp}/preview.jpg"], "is not a .png file name"),
        (["--config", "{tmp}/missing.toml"], "missing.toml does not exist"),
    ],
)
def test_bad_preview_options_exit_with_one_line_and_write_nothing(colour_dataset, tmp_path, arguments, words):
    command = ["augment", str(colour_dataset), "--out", str(tmp_path / "preview.png")]
    result = runner.invoke(app, command + [value.format(tmp=tmp_path) for value in arguments])
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and words in result.output.replace("\n", " ")
    assert list(tmp_path.iterdir()) == []


# --- training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_model_trained_with_augmentation_saves_without_it_and_predicts_deterministically(colour_dataset, tmp_path):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset
    from tlcli.models.saved import load_run_model

    result = runner.invoke(app, ["train", str(colour_dataset), "--model", "vgg16", "--weights", "none",
                                 "--image-size", "32", "--epochs", "1", "--augment", "heavy", "--dense", "8",
                                 "--dropout", "0.2", "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and "nan" not in history[1]
    reloaded, info = load_run_model(tmp_path / "run")
    assert not any(type(layer).__name__.startswith("Random") for layer in reloaded._flatten_layers())
    images = np.concatenate([b[0].numpy() for b in image_dataset(load_dataset(colour_dataset).split("val"), 32, 16)])
    first, second = reloaded.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    np.testing.assert_array_equal(first, second)  # no augmentation or dropout at inference
