"""The backbone table, over all four Keras Applications at their smallest input sizes."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.errors import TlcliError
from tlcli.models.backbones import (
    BACKBONES,
    MAX_FEATURE_MAP_BYTES,
    cached_weights_path,
    get_backbone,
    resolve_image_size,
)
from tlcli.models.weights import WeightsSource, build_base, find_base, parse_weights

SPECS = list(BACKBONES.values())
IDS = [spec.name for spec in SPECS]


@pytest.fixture(scope="session")
def bases():
    """One randomly initialised base per backbone at its minimum size, shared by the tests."""
    return {spec.name: build_base(spec, spec.min_size, WeightsSource("none")) for spec in SPECS}


def _reference_preprocessing(style: str, pixels: np.ndarray) -> np.ndarray:
    if style == "caffe":  # BGR order, minus the ImageNet means, no scaling
        return pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    return pixels / 127.5 - 1.0


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_features_have_the_tables_size(spec):
    from tlcli.models.build import build_feature_extractor

    extractor = build_feature_extractor(spec, spec.min_size, WeightsSource("none"), pooling="avg")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, spec.min_size, spec.min_size, 3))
    features = extractor(pixels.astype("float32"), training=False)
    assert tuple(features.shape) == (2, spec.feature_size)
    assert find_base(extractor, spec).trainable is False


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_in_graph_preprocessing_is_the_backbones_own(spec):
    import keras

    from tlcli.models.layers import BackbonePreprocessing

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, BackbonePreprocessing(spec.name)(inputs))
    in_graph = np.asarray(model(pixels))
    np.testing.assert_allclose(in_graph, spec.preprocess_function()(pixels.copy()), atol=1e-5)
    np.testing.assert_allclose(in_graph, _reference_preprocessing(spec.preprocessing, pixels), atol=1e-4)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_weights_from_a_local_file_load_identically(spec, bases, tmp_path):
    source = bases[spec.name]
    path = tmp_path / f"{spec.name}.weights.h5"
    source.save_weights(path)
    loaded = build_base(spec, spec.min_size, parse_weights(str(path)))
    for expected, actual in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_block_in_the_table_starts_at_a_real_layer(spec, bases):
    names = [layer.name for layer in bases[spec.name].layers]
    for block in spec.blocks:
        assert (block.first_layer or block.after_layer) in names, block


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_tables_layer_count_is_the_backbones_at_any_size(spec, bases):
    assert len(bases[spec.name].layers) == spec.layer_count
    if spec.name == "vgg16":  # cheap enough to build twice
        assert len(build_base(spec, 64, WeightsSource("none")).layers) == spec.layer_count


def test_a_weights_file_for_another_backbone_is_a_clear_error(bases, tmp_path):
    path = tmp_path / "vgg.weights.h5"
    bases["vgg16"].save_weights(path)
    with pytest.raises(TlcliError, match=r"does not fit resnet50 without its top"):
        build_base(get_backbone("resnet50"), 32, parse_weights(str(path)))


def test_imagenet_offline_fails_fast_naming_file_and_cache():
    spec = get_backbone("vgg16")
    if cached_weights_path(spec):
        pytest.skip("ImageNet weights are cached on this machine; the offline path cannot run")
    with pytest.raises(TlcliError) as raised:
        build_base(spec, 32, WeightsSource("imagenet"))
    message = str(raised.value)
    assert "could not be downloaded" in message
    assert spec.weights_file in message and ".keras/models" in message
    assert "--weights none" in message and "--weights PATH" in message


def test_image_size_below_the_minimum_names_it():
    spec = get_backbone("inceptionv3")
    assert resolve_image_size(spec, None) == 299
    assert resolve_image_size(spec, 75) == 75
    with pytest.raises(TlcliError, match=r"--image-size 20 is too small for inceptionv3 \(minimum 75\)"):
        resolve_image_size(spec, 20)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_image_size_above_the_maximum_names_it_and_why(spec):
    assert resolve_image_size(spec, spec.max_size) == spec.max_size
    with pytest.raises(TlcliError) as raised:
        resolve_image_size(spec, 10000)
    message = str(raised.value)
    assert f"--image-size 10000 is too large for {spec.name} (maximum {spec.max_size})" in message
    assert "GiB for a single layer's output" in message and f"Use --image-size {spec.max_size} or less." in message


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_maximum_image_size_keeps_the_largest_feature_map_within_its_budget(spec):
    """The table's maximum: the largest side (a multiple of 32) whose largest feature map fits."""
    base = build_base(spec, spec.max_size, WeightsSource("none"))
    largest = max(4 * int(np.prod(layer.output.shape[1:])) for layer in base.layers[1:])
    assert largest <= MAX_FEATURE_MAP_BYTES
    assert largest * ((spec.max_size + 32) / spec.max_size) ** 2 > MAX_FEATURE_MAP_BYTES
    assert spec.max_size % 32 == 0


@pytest.mark.parametrize(
    "value, message",
    [("nope.h5", "no such file or folder"), ("weights.txt", r"\.txt is not a weights format")],
)
def test_bad_weights_values_are_clear_errors(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(TlcliError, match=message):
        parse_weights(value)


def test_unknown_model_lists_the_choices():
    with pytest.raises(TlcliError, match="Unknown model 'resnet18'. Choose one of: vgg16, resnet50"):
        get_backbone("resnet18")
