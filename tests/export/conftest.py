"""Exports of the session's TinyNet run that many tests only read: one of every format, verified
by tlcli in a fresh process (that process's start is paid once), and the test images' pixels
with the Keras model's answers to compare every artefact with."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from helpers import invoke

# Every format tlcli writes (ONNX when its optional extra is installed), as test_export.py names them.
FORMATS = ["saved_model", "keras", "tflite"] + (
    ["onnx"] if all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime")) else [])


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory):
    """`tiny_run` exported in every format and verified: (the folder, export's --json report)."""
    out = tmp_path_factory.mktemp("export") / "model"
    formats = [option for name in FORMATS for option in ("--format", name)]
    result = invoke("export", tiny_run, "--out", out, *formats, "--json")
    return out, json.loads(result.stdout)


@pytest.fixture(scope="session")
def exported_with_tta(tiny_run, tmp_path_factory):
    """`tiny_run`'s SavedModel with the serving_tta signature (flip), not verified: the tests
    that read it check it themselves."""
    out = tmp_path_factory.mktemp("export-tta") / "model"
    invoke("export", tiny_run, "--out", out, "--tta", "--no-verify")
    return out


@pytest.fixture(scope="session")
def reference(tiny_run, colour_dataset, tmp_path_factory):
    """Test-split PNGs, their pixels (as the training pipeline reads them) and the Keras answers."""
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset
    from tlcli.models.saved import load_run_model

    model, info = load_run_model(tiny_run)
    samples = load_dataset(colour_dataset).split("test")
    pixels = np.concatenate([images.numpy() for images, _ in image_dataset(samples, info.image_size, 64)])
    pixels_path = tmp_path_factory.mktemp("reference") / "pixels.npy"
    np.save(pixels_path, pixels)
    probabilities = model(pixels, training=False).numpy()
    return {"files": [str(s.path) for s in samples], "pixels": pixels_path, "probabilities": probabilities,
            "model": model}
