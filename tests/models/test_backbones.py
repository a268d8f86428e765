"""The backbone table, over every row's Keras Application at its smallest input size: TinyNet's row in
the fast suite, the real backbones' (what only they can show) in the whole suite."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_backbone
from tlcli.errors import TlcliError
from tlcli.models.backbones import BACKBONES, MAX_FEATURE_MAP_BYTES, get_backbone, resolve_image_size
from tlcli.models.weights import WeightsSource, build_base, find_base

TINY = tiny_backbone.TINY
REAL = [spec for spec in BACKBONES.values() if spec is not TINY]


def rows(specs=None, *, tiny: bool = True) -> list:
    """`specs` (every real row by default) marked `slow`, TinyNet's row unmarked when `tiny`: the real
    backbones take seconds each to build."""
    real = [pytest.param(spec, id=spec.name, marks=pytest.mark.slow) for spec in (REAL if specs is None else specs)]
    return ([pytest.param(TINY, id=TINY.name)] if tiny else []) + real

# Every row, TinyNet's included, for what needs no backbone built.
SPECS = [TINY, *REAL]
IDS = [spec.name for spec in SPECS]


def _reference_preprocessing(spec, pixels: np.ndarray) -> np.ndarray:
    if spec.preprocessing == "caffe":  # BGR order, minus the ImageNet means, no scaling
        return pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    if spec.preprocessing == "torch":  # [0, 1], then ImageNet mean and standard deviation
        return (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    if spec.name == "efficientnetv2s":  # Keras's own EfficientNetV2 S/M/L rescaling divides by 128
        return pixels / 128.0 - 1.0
    return pixels / 127.5 - 1.0


def _backbone_preprocessing(base, pixels: np.ndarray) -> np.ndarray:
    """What the Keras application's own first layers (before its first convolution) make of pixels."""
    import keras

    own = [layer for layer in base.layers[1:3] if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))]
    if not own:
        return pixels
    return np.asarray(keras.Model(base.input, own[-1].output)(pixels))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_in_graph_preprocessing_is_the_backbones_own(spec):
    import keras

    from tlcli.models.layers import BackbonePreprocessing

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, BackbonePreprocessing(spec.name)(inputs))
    in_graph = np.asarray(model(pixels))
    np.testing.assert_allclose(in_graph, spec.preprocess_function()(pixels.copy()), atol=1e-5)
    if spec.preprocessing_in_backbone:  # preprocess_input is the identity: the backbone's layers do it
        np.testing.assert_array_equal(in_graph, pixels)
    else:
        np.testing.assert_allclose(in_graph, _reference_preprocessing(spec, pixels), atol=1e-4)


@pytest.mark.parametrize("spec", rows())
def test_the_backbones_own_first_layers_rescale_only_where_the_table_says(spec, bases):
    pixels = np.random.default_rng(2).uniform(0, 255, (1, spec.min_size, spec.min_size, 3)).astype("float32")
    rescaled = _backbone_preprocessing(bases[spec.name], pixels)
    if spec.preprocessing_in_backbone:
        np.testing.assert_allclose(rescaled, _reference_preprocessing(spec, pixels), atol=1e-4)
    else:
        np.testing.assert_array_equal(rescaled, pixels)


def _pooled(features: np.ndarray) -> np.ndarray:
    """Features averaged over the map, as pooling="avg" averages them: TinyNet's constructor takes no
    `pooling` and returns its map."""
    return features.mean(axis=(1, 2)) if features.ndim == 4 else features


@pytest.mark.parametrize("spec", rows())
def test_features_have_the_tables_size_and_pixels_are_preprocessed_exactly_once(spec):
    """tlcli's extractor on [0, 255] pixels gives what the bare Keras application gives when fed
    as Keras documents (preprocess_input, then the model); applying the rescaling twice would not."""
    from tlcli.models.build import build_feature_extractor

    extractor = build_feature_extractor(spec, spec.min_size, WeightsSource("none"), pooling="avg")
    bare = spec.build_constructor()(include_top=False, weights=None, input_shape=(spec.min_size,) * 2 + (3,),
                                    pooling="avg")
    bare.set_weights(find_base(extractor, spec).get_weights())
    pixels = np.random.default_rng(3).uniform(0, 255, (2, spec.min_size, spec.min_size, 3)).astype("float32")
    features = np.asarray(extractor(pixels, training=False))
    assert features.shape == (2, spec.feature_size)
    assert find_base(extractor, spec).trainable is False
    documented_input = np.asarray(spec.preprocess_function()(pixels.copy()))
    documented = _pooled(np.asarray(bare(documented_input, training=False)))
    # Random MobileNetV3 features are tiny (about 1e-10), so tolerances are relative to their scale.
    scale = np.abs(documented).max()
    np.testing.assert_allclose(features, documented, rtol=1e-5, atol=1e-5 * scale)
    # Preprocessed twice: by tlcli as well as by the backbone's own layers, or by preprocess_input twice.
    once = _reference_preprocessing(spec, pixels) if spec.preprocessing_in_backbone else documented_input
    twice = _pooled(np.asarray(bare(spec.preprocess_function()(once.astype("float32")), training=False)))
    assert np.abs(twice - documented).max() > 0.1 * scale


@pytest.mark.parametrize("spec", rows([spec for spec in REAL if not spec.classic], tiny=False))
def test_block_anchors_and_the_explained_layer_survive_a_second_build(spec, bases):
    """Anchors are names Keras gives whatever else the process has built: a second build (where
    the global counter has moved on) finds every block at the same index, and the same map."""
    first = bases[spec.name]
    second = build_base(spec, spec.min_size, WeightsSource("none"))
    first_names, second_names = [layer.name for layer in first.layers], [layer.name for layer in second.layers]
    assert first_names != second_names  # the counter has moved: some names differ
    for block in spec.blocks:
        assert first_names.index(block.first_layer) == second_names.index(block.first_layer), block
    index = first.layers.index(spec.explain_layer(first))
    assert second.layers.index(spec.explain_layer(second)) == index
    assert len(spec.explain_layer(first).output.shape) == 4  # a spatial map, for Grad-CAM
    assert index > first_names.index(spec.blocks[-1].first_layer)


@pytest.mark.parametrize("spec", rows())
def test_every_block_in_the_table_starts_at_a_real_layer(spec, bases):
    names = [layer.name for layer in bases[spec.name].layers]
    for block in spec.blocks:
        assert (block.first_layer or block.after_layer) in names, block


@pytest.mark.parametrize("spec", rows())
def test_the_tables_layer_count_is_the_backbones_at_any_size(spec, bases):
    assert len(bases[spec.name].layers) == spec.layer_count
    if spec.name in ("vgg16", TINY.name):  # cheap enough to build twice
        assert len(build_base(spec, 64, WeightsSource("none")).layers) == spec.layer_count


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


@pytest.mark.parametrize("spec", rows(tiny=False))  # TinyNet's maximum is set by hand, not by this budget
def test_the_maximum_image_size_keeps_the_largest_feature_map_within_its_budget(spec):
    """The table's maximum: the largest side (a multiple of 32) whose largest feature map fits."""
    base = build_base(spec, spec.max_size, WeightsSource("none"))
    largest = max(4 * int(np.prod(layer.output.shape[1:])) for layer in base.layers[1:])
    assert largest <= MAX_FEATURE_MAP_BYTES
    assert largest * ((spec.max_size + 32) / spec.max_size) ** 2 > MAX_FEATURE_MAP_BYTES
    assert spec.max_size % 32 == 0


def test_unknown_model_lists_the_choices():
    with pytest.raises(TlcliError, match="Unknown model 'resnet18'. Choose one of: vgg16, resnet50"):
        get_backbone("resnet18")


def test_blocks_are_found_by_name_and_an_unknown_one_lists_the_blocks():
    spec = get_backbone("vgg16")
    assert spec.block("block4").first_layer == "block4_conv1"
    with pytest.raises(TlcliError, match=r"'block6' is not a block of vgg16 \(blocks: block1, block2, block3, block4, "
                                         r"block5\)\."):
        spec.block("block6")


def test_the_explained_layer_is_the_named_one_or_else_the_backbones_last(bases):
    import dataclasses

    base = bases[TINY.name]
    assert TINY.explain_layer(base) is base.get_layer("block3_conv2")
    assert dataclasses.replace(TINY, last_conv_layer=None).explain_layer(base) is base.layers[-1]
