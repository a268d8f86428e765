"""Cutting a classifier where a fine-tuning stage's frozen part ends, for every backbone's blocks."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.models.backbones import BACKBONES, get_backbone
from tlcli.models.build import build_classifier, build_head
from tlcli.models.split import block_start, split_classifier
from tlcli.models.weights import WeightsSource, build_base
from tlcli.training.finetune import first_unfrozen_index, unfreeze

SPECS = list(BACKBONES.values())


def _classifier(spec):
    base = build_base(spec, spec.min_size, WeightsSource("none"))
    head = build_head((spec.feature_size,), 3)
    return build_classifier(spec, spec.min_size, base, head, "avg"), base


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
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


def test_a_cut_inside_a_residual_block_moves_down_to_the_blocks_own_start():
    spec = get_backbone("resnet50")
    model, base = _classifier(spec)
    start = [layer.name for layer in base.layers].index("conv5_block1_2_conv")  # inside conv5's first block
    unfreeze(base, start, False)
    split = split_classifier(model, base, spec, start)
    assert split.boundary == "conv4_block6_out"
    assert len(split.upper.trainable_weights) == len(model.trainable_weights)


def test_nothing_is_cut_when_the_stem_below_the_first_block_is_trained():
    spec = get_backbone("resnet50")
    model, base = _classifier(spec)
    start = first_unfrozen_index(base, spec, "all")
    unfreeze(base, start, False)
    assert split_classifier(model, base, spec, start) is None
