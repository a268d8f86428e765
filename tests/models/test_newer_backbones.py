"""A smoke path for the newer backbones (EfficientNetV2, ConvNeXt, MobileNetV3), each at its minimum
size with random weights: train (solved head) -> finetune one named block for one epoch -> export
a .keras file and reload it to the same probabilities -> explain.

The classic four run the fuller matrix of `trained_runs` (tests/conftest.py); the table-level tests
in test_backbones.py (features, preprocessing applied once, anchors, explained layer) cover every
row. Whole suite only (slow): EfficientNetV2S alone takes about 70 s."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tiny_backbone
from helpers import invoke, read_history, write_colour_dataset
from tlcli.models.backbones import BACKBONES
from tlcli.models.saved import load_run_model
from tlcli.models.weights import find_base

# The newer Keras rows (TinyNet, the tests' own row, runs these workflows in the fast suite).
NEWER = [pytest.param(spec, id=spec.name) for spec in BACKBONES.values()
         if not spec.classic and spec.name != tiny_backbone.NAME]


@pytest.fixture(scope="module")
def small_colours(tmp_path_factory):
    """Four training images a class: at 32 px the time goes to building and tracing, not to data."""
    return write_colour_dataset(tmp_path_factory.mktemp("small") / "data", per_split={"train": 4, "val": 2, "test": 2})


@pytest.mark.slow
@pytest.mark.parametrize("spec", NEWER)
def test_train_finetune_export_and_explain(spec, small_colours, tmp_path):
    train_dir, tune_dir, exported = tmp_path / "run", tmp_path / "tuned", tmp_path / "exported"
    invoke("train", small_colours, "--model", spec.name, "--weights", "none", "--image-size", spec.min_size,
           "--batch-size", 8, "--quiet", "--out", train_dir)
    config = json.loads((train_dir / "config.json").read_text())
    assert config["model"] == spec.name and config["route"] == "solved (L-BFGS)"

    block = spec.blocks[-1].name
    invoke("finetune", train_dir, "--stage", f"{block}:1:1e-4", "--batch-size", 8, "--quiet", "--out", tune_dir)
    assert [row["stage"] for row in read_history(tune_dir)] == [f"stage1-{block}"]

    # Export's own verification re-runs both models; the reload comparison below is the same check.
    invoke("export", tune_dir, "--format", "keras", "--no-verify", "--out", exported)
    keras_file = exported / "model.keras"
    model, _ = load_run_model(tune_dir)
    reloaded, _ = load_run_model(keras_file)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, spec.min_size, spec.min_size, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(reloaded(pixels)), np.asarray(model(pixels)), atol=1e-5)

    image = small_colours / "test" / "red" / "red_0.png"
    explained = json.loads(invoke("explain", tune_dir, image, "--json", "--out", tmp_path / "explained").stdout)
    assert explained[0]["class"] in ("blue", "green", "red")
    saved = json.loads((tmp_path / "explained" / "explain.json").read_text())
    assert saved["backbone_layer"] == spec.explain_layer(find_base(model, spec)).name
