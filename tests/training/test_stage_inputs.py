"""A fine-tuning stage's batches: the images, or the frozen part's output computed once, which
must give the upper part exactly what the images give the whole classifier."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.distribute.placement import DistributeConfig, place
from tlcli.models.backbones import get_backbone
from tlcli.models.saved import load_run_model
from tlcli.models.weights import find_base
from tlcli.training.config import FitConfig
from tlcli.training.finetune import first_unfrozen_index, unfreeze
from tlcli.training.stage_inputs import cached_inputs, image_inputs, plan_route

# TinyNet's convolutions' multiply-adds per 32 px image, block by block (conv1 + conv2).
BLOCK_MULTIPLY_ADDS = {
    "block1": 32 * 32 * 9 * (3 * 8 + 8 * 8),
    "block2": 16 * 16 * 9 * (8 * 16 + 16 * 16),
    "block3": 8 * 8 * 9 * (16 * 32 + 32 * 32),
}


def unfrozen(run, unfreeze_from: str):
    model, _ = load_run_model(run)
    spec = get_backbone("tinynet")
    base = find_base(model, spec)
    start = first_unfrozen_index(base, spec, unfreeze_from)
    unfreeze(base, start, train_batch_norm=False)
    return model, base, spec, start


@pytest.mark.parametrize("unfreeze_from, cache_features, reason", [
    ("block3", True, "cut at block2_pool, 66% of the forward pass below it"),
    ("block2", True, "cut at block1_pool, 31% of the forward pass below it"),
    ("block1", True, "the frozen part below block1 is 0% of the forward pass (caching pays from 25%)"),
    ("all", True, "nothing below all is frozen"),
    ("block3", False, "--no-cache-features"),
])
def test_a_stage_is_cached_where_the_frozen_part_is_a_quarter_of_the_work(tiny_run, unfreeze_from, cache_features,
                                                                           reason):
    model, base, spec, start = unfrozen(tiny_run, unfreeze_from)
    route = plan_route(model, base, spec, start, cache_features, unfreeze_from)
    assert route.reason == reason
    assert (route.split is not None) == reason.startswith("cut at")
    if route.split is not None:
        below = [block for block in BLOCK_MULTIPLY_ADDS if block < unfreeze_from]
        share = sum(BLOCK_MULTIPLY_ADDS[block] for block in below) / sum(BLOCK_MULTIPLY_ADDS.values())
        assert route.split.frozen_share == pytest.approx(share)


@pytest.mark.parametrize("memory_budget", [2**30, 0], ids=["in memory", "spilled to disk"])
def test_cached_batches_give_the_upper_part_what_the_images_give_the_classifier(tiny_run, colour_dataset, tmp_path,
                                                                                  memory_budget):
    model, base, spec, start = unfrozen(tiny_run, "block3")
    split = plan_route(model, base, spec, start, True, "block3").split
    dataset = load_dataset(colour_dataset, SplitOptions(0.2, 0.0, 0))
    placement, fit = place(DistributeConfig()), FitConfig(batch_size=8, seed=3)
    images = image_inputs(placement, dataset, 32, fit)
    rows, report = cached_inputs(placement, dataset, split, 32, fit, memory_budget=memory_budget, scratch_dir=tmp_path)
    try:
        assert (report.images, report.in_memory) == (36, memory_budget > 0)
        assert (rows.steps, rows.val_steps) == (images.steps, images.val_steps) == (3, 2)  # 24 and 12 images, 8 a batch
        for epoch in (0, 1):  # each epoch's own shuffle, the same for both
            images.epoch.assign(epoch)
            rows.epoch.assign(epoch)
            for (pixels, targets), (cut, cached_targets) in zip(images.train_data, rows.train_data, strict=True):
                np.testing.assert_array_equal(targets.numpy(), cached_targets.numpy())
                np.testing.assert_allclose(split.upper(cut, training=False), model(pixels, training=False),
                                           rtol=1e-5, atol=1e-6)
        validation = [(model(pixels, training=False), targets) for pixels, targets in images.val_data]
        for (expected, targets), (cut, cached_targets) in zip(validation, rows.val_data, strict=True):
            np.testing.assert_array_equal(targets.numpy(), cached_targets.numpy())
            np.testing.assert_allclose(split.upper(cut, training=False), expected, rtol=1e-5, atol=1e-6)
    finally:
        rows.close()
    assert list(tmp_path.iterdir()) == []  # a spilled cache's scratch file is gone once closed
