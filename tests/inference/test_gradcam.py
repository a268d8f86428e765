"""tlcli.inference.gradcam: Grad-CAM maps from the backbone table's last block, through the model as saved."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_backbone
from tlcli.inference.gradcam import GradCam
from tlcli.inference.heatmaps import PREDICTED
from tlcli.models.backbones import BACKBONES, CLASSIC_NAMES
from tlcli.models.saved import load_run_model


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_a_fine_tuned_run_of_every_backbone_is_explained_at_its_smallest_size(trained_runs, name):
    """The maps come from the backbone table's last block, through the fine-tuned model as saved."""
    _, tuned, _ = trained_runs[name]
    model, info = load_run_model(tuned)
    spec = BACKBONES[name]
    images = np.random.default_rng(0).uniform(0, 255, (3, spec.min_size, spec.min_size, 3)).astype(np.float32)
    probabilities, heatmaps = GradCam(model)(images, [PREDICTED, 0, 2])

    np.testing.assert_allclose(probabilities, np.asarray(model(images, training=False)), atol=1e-5)
    block = model.get_layer(name.replace("inceptionv3", "inception_v3")).get_layer(spec.last_conv_layer)
    assert [heatmap.values.shape for heatmap in heatmaps] == [tuple(block.output.shape[1:3])] * 3
    assert [heatmap.class_index for heatmap in heatmaps] == [int(probabilities[0].argmax()), 0, 2]
    for heatmap in heatmaps:
        assert heatmap.values.min() >= 0 and heatmap.values.max() <= 1


def test_the_maps_come_from_the_tables_last_block_through_the_model_as_saved(tiny_run):
    """The per-backbone test above, on TinyNet (a fine-tuned run is saved in the same shape)."""
    model, info = load_run_model(tiny_run)
    spec = BACKBONES[tiny_backbone.NAME]
    images = np.random.default_rng(0).uniform(0, 255, (3, info.image_size, info.image_size, 3)).astype(np.float32)
    probabilities, heatmaps = GradCam(model)(images, [PREDICTED, 0, 2])

    np.testing.assert_allclose(probabilities, np.asarray(model(images, training=False)), atol=1e-5)
    block = model.get_layer(spec.name).get_layer(spec.last_conv_layer)
    assert [heatmap.values.shape for heatmap in heatmaps] == [tuple(block.output.shape[1:3])] * 3 == [(8, 8)] * 3
    assert [heatmap.class_index for heatmap in heatmaps] == [int(probabilities[0].argmax()), 0, 2]
    for heatmap in heatmaps:
        assert heatmap.values.min() >= 0 and heatmap.values.max() <= 1
