"""Cutting a classifier where a fine-tuning stage's frozen part ends: TinyNet's blocks in the fast suite,
every real backbone's blocks (ResNet's residual blocks among them) in the whole suite."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tiny_backbone
from tlcli.models.backbones import BACKBONES, Block, get_backbone
from tlcli.models.build import build_classifier, build_head
from tlcli.models.split import block_start, multiply_adds, split_classifier
from tlcli.models.weights import WeightsSource, build_base
from tlcli.training.finetune import first_unfrozen_index, unfreeze

TINY = tiny_backbone.TINY
# TinyNet's row in the fast suite; the real backbones' (seconds each to build) in the whole suite.
ROWS = [pytest.param(TINY, id=TINY.name)] + [pytest.param(spec, id=spec.name, marks=pytest.mark.slow)
                                             for spec in BACKBONES.values() if spec is not TINY]


def _classifier(spec):
    base = build_base(spec, spec.min_size, WeightsSource("none"))
    head = build_head((spec.feature_size,), 3)
    return build_classifier(spec, spec.min_size, base, head, "avg"), base


@pytest.mark.parametrize("spec", ROWS)
def test_every_block_starts_at_a_single_tensor_cut_and_the_two_parts_make_the_classifier(spec):
    model, base = _classifier(spec)
    images = np.random.default_rng(0).uniform(0, 255, (2, spec.min_size, spec.min_size, 3)).astype(np.float32)
    expected = np.asarray(model(images, training=False))
    shares = []
    for block in spec.blocks:
        start = block_start(base, block)
        unfreeze(base, start, False)
        split = split_classifier(model, base, spec, start)
        assert split is not None, f"{spec.name} {block.name}"
        cut = np.asarray(split.lower(images, training=False))
        assert cut.shape[1:] == split.row_shape
        np.testing.assert_allclose(np.asarray(split.upper(cut, training=False)), expected, rtol=1e-4, atol=1e-6)
        # Everything the stage trains is in the upper part, which trains the classifier's own weights.
        assert {id(weight) for weight in split.upper.trainable_weights} == {
            id(weight) for weight in model.trainable_weights}
        shares.append(split.frozen_share)
    assert shares == sorted(shares) and shares[-1] > 0.5  # the higher the block, the more is computed once


@pytest.mark.slow
def test_a_cut_inside_a_residual_block_moves_down_to_the_blocks_own_start():
    spec = get_backbone("resnet50")
    model, base = _classifier(spec)
    start = [layer.name for layer in base.layers].index("conv5_block1_2_conv")  # inside conv5's first block
    unfreeze(base, start, False)
    split = split_classifier(model, base, spec, start)
    assert split.boundary == "conv4_block6_out"
    assert len(split.upper.trainable_weights) == len(model.trainable_weights)


@pytest.mark.slow
def test_nothing_is_cut_when_the_stem_below_the_first_block_is_trained():
    spec = get_backbone("resnet50")
    model, base = _classifier(spec)
    start = first_unfrozen_index(base, spec, "all")
    unfreeze(base, start, False)
    assert split_classifier(model, base, spec, start) is None


def _tiny_classifier(image_size=32):
    base = build_base(TINY, image_size, WeightsSource("none"))
    return build_classifier(TINY, image_size, base, build_head((TINY.feature_size,), 3), "avg"), base


def _start_of(base, name: str) -> int:
    return [layer.name for layer in base.layers].index(name)


def test_a_cut_inside_a_block_moves_down_to_the_blocks_own_start():
    model, base = _tiny_classifier()
    start = _start_of(base, "block3_bn")  # inside block3, below its second convolution
    unfreeze(base, start, False)
    split = split_classifier(model, base, TINY, start)
    assert split.boundary == "block2_pool" and split.row_shape == (8, 8, 16)
    trained = {id(weight) for weight in model.trainable_weights}
    assert {id(weight) for weight in split.upper.trainable_weights} == trained


def test_nothing_is_cut_when_every_layer_of_the_backbone_is_trained():
    model, base = _tiny_classifier()
    start = first_unfrozen_index(base, TINY, "all")
    unfreeze(base, start, False)
    assert split_classifier(model, base, TINY, start) is None


def test_a_layer_trained_below_a_block_moves_the_cut_below_that_layer():
    """A cut freezes what lies below it: a trainable layer there sends the cut further down."""
    model, base = _tiny_classifier()
    start = _start_of(base, "block3_conv1")
    unfreeze(base, start, False)
    base.get_layer("block2_conv2").trainable = True
    assert split_classifier(model, base, TINY, start).boundary == "block1_pool"


def test_a_classifier_that_is_not_a_plain_chain_is_not_cut():
    import keras

    model, base = _tiny_classifier()
    start = _start_of(base, "block3_conv1")
    unfreeze(base, start, False)
    doubled = keras.Model(model.input, keras.layers.Add()([model.output, model.output]))  # two inputs meet
    assert split_classifier(doubled, base, TINY, start) is None
    assert split_classifier(model, base, TINY, start) is not None


def _tiny_multiply_adds(side: int) -> list[int]:
    """Each TinyNet block's convolution multiply-adds for one image of `side` pixels, by hand:
    3x3 windows at the block's resolution (halved by each block's pooling)."""
    costs, channels = [], 3
    for number, filters in enumerate((8, 16, 32)):
        positions = (side // 2**number) ** 2
        costs.append(positions * 9 * (channels * filters + filters * filters))
        channels = filters
    return costs


@pytest.mark.parametrize("image_size", [16, 32])
def test_the_frozen_share_is_the_multiply_adds_below_the_cut(image_size):
    model, base = _tiny_classifier(image_size)
    costs = _tiny_multiply_adds(image_size)
    for number, block in enumerate(TINY.blocks):
        start = block_start(base, block)
        unfreeze(base, start, False)
        split = split_classifier(model, base, TINY, start)
        assert split.frozen_share == pytest.approx(sum(costs[:number]) / sum(costs), abs=1e-12), block.name


def test_multiply_adds_are_counted_per_image_for_each_kind_of_layer():
    import keras

    layers = keras.layers

    def called(layer, shape):
        layer(keras.Input(shape))
        return multiply_adds(layer)

    assert called(layers.Conv2D(8, 3, padding="same"), (10, 10, 3)) == 10 * 10 * 9 * 3 * 8
    assert called(layers.Conv2D(4, 3, strides=2), (9, 9, 2)) == 4 * 4 * 9 * 2 * 4
    assert called(layers.Conv2D(6, 1, groups=2), (5, 5, 4)) == 5 * 5 * 2 * 6  # each filter sees half the channels
    assert called(layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (6, 6, 4)) == 6 * 6 * 9 * 4 * 2
    assert called(layers.SeparableConv2D(5, 3, padding="same"), (6, 6, 4)) == 6 * 6 * (9 * 4 + 4 * 5)
    assert called(layers.Dense(7), (5,)) == 5 * 7
    assert called(layers.Dense(7), (4, 5)) == 4 * 5 * 7
    assert called(layers.MaxPooling2D(2), (6, 6, 4)) == 0


def test_a_block_anchored_after_a_layer_cuts_at_that_layers_output():
    """InceptionV3's blocks are anchored on the layer that ends the block before: the same cut."""
    model, base = _tiny_classifier()
    after = dataclasses.replace(TINY, blocks=(Block("block3", after_layer="block2_pool"),))
    start = _start_of(base, "block3_conv1")
    unfreeze(base, start, False)
    assert block_start(base, after.blocks[0]) == start
    anchored_after, anchored_at = (split_classifier(model, base, spec, start) for spec in (after, TINY))
    assert anchored_after.boundary == anchored_at.boundary == "block2_pool"


def _residual_classifier():
    """A backbone (named as TinyNet, for its preprocessing) whose shortcut from `stem` crosses the
    start of block "crossed", and whose block "sum" begins at a layer that takes two tensors."""
    import keras

    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    inner = layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    crossed = layers.Conv2D(4, 3, padding="same", name="crossed")(inner)
    summed = layers.Add(name="sum")([stem, crossed])
    top = layers.Conv2D(TINY.feature_size, 3, padding="same", name="top")(summed)
    base = keras.Model(inputs, top, name=TINY.name)
    blocks = tuple(Block(name, first_layer=name) for name in ("inner", "crossed", "sum", "top"))
    spec = dataclasses.replace(TINY, blocks=blocks)
    return build_classifier(spec, 16, base, build_head((TINY.feature_size,), 3), "avg"), base, spec


def test_no_cut_where_a_shortcut_crosses_or_a_block_begins_with_several_tensors():
    model, base, spec = _residual_classifier()
    images = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    for start_layer, boundary in (("sum", "stem"), ("crossed", "stem"), ("top", "sum")):
        start = _start_of(base, start_layer)
        unfreeze(base, start, False)
        split = split_classifier(model, base, spec, start)
        assert split.boundary == boundary, start_layer
        np.testing.assert_allclose(np.asarray(split.upper(split.lower(images))), np.asarray(model(images)),
                                   rtol=1e-4, atol=1e-6)
