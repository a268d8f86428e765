"""A smoke path for the newer backbones (EfficientNetV2, ConvNeXt, MobileNetV3), each at its minimum
size with random weights: train (solved head) -> finetune one named block for one epoch -> export
a .keras file, verified and reloaded -> explain. The classic four run the fuller matrix of
`trained_runs` (tests/conftest.py); the table-level tests in test_backbones.py cover every row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import invoke, read_history
from tlcli.models.backbones import BACKBONES
from tlcli.models.saved import load_run_model
from tlcli.models.weights import find_base

NEWER = [spec for spec in BACKBONES.values() if not spec.classic]


@pytest.mark.slow
@pytest.mark.parametrize("spec", NEWER, ids=[spec.name for spec in NEWER])
def test_train_finetune_export_and_explain(spec, colour_dataset, tmp_path):
    train_dir, tune_dir, exported = tmp_path / "run", tmp_path / "tuned", tmp_path / "exported"
    invoke("train", colour_dataset, "--model", spec.name, "--weights", "none", "--image-size", spec.min_size,
           "--batch-size", 8, "--quiet", "--out", train_dir)
    config = json.loads((train_dir / "config.json").read_text())
    assert config["model"] == spec.name and config["route"] == "solved (L-BFGS)"

    block = spec.blocks[-1].name
    invoke("finetune", train_dir, "--stage", f"{block}:1:1e-4", "--batch-size", 8, "--quiet", "--out", tune_dir)
    assert [row["stage"] for row in read_history(tune_dir)] == [f"stage1-{block}"]

    invoke("export", tune_dir, "--format", "keras", "--out", exported)  # verified against the run's model
    keras_file = exported / "model.keras"
    model, _ = load_run_model(tune_dir)
    reloaded, _ = load_run_model(keras_file)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, spec.min_size, spec.min_size, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(reloaded(pixels)), np.asarray(model(pixels)), atol=1e-5)

    image = colour_dataset / "test" / "red" / "red_0.png"
    explained = json.loads(invoke("explain", tune_dir, image, "--json", "--out", tmp_path / "explained").stdout)
    assert explained[0]["class"] in ("blue", "green", "red")
    saved = json.loads((tmp_path / "explained" / "explain.json").read_text())
    assert saved["backbone_layer"] == spec.explain_layer(find_base(model, spec)).name
