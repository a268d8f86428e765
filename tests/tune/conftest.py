"""Fixtures of the search tests: a finished head search, and a run of a real backbone for the
errors that name its blocks and layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import invoke


@pytest.fixture(scope="session")
def grid_search(colour_dataset, tmp_path_factory):
    """A 2x2 grid from a --config file: fixed settings on top, then [tune] and [space] tables.
    (tuning directory, the command's output); tests only read it."""
    root = tmp_path_factory.mktemp("tune")
    settings = root / "tune.toml"
    settings.write_text("""
model = "tinynet"
weights = "none"
image-size = 32
epochs = 2
optimizer = "sgd"
[tune]
search = "grid"
[space]
learning_rate = [0.01, 0.03]
dense = [[], [8]]
""")
    tune_dir = root / "grid"
    result = invoke("tune", colour_dataset, "--config", settings, "--out", tune_dir)
    return tune_dir, result.output


@pytest.fixture(scope="session")
def vgg16_run(colour_dataset, tmp_path_factory) -> Path:
    """The VGG16 run of tests/training/conftest.py (32 px, random weights, solved head, on the
    session's colour dataset), for the errors that name VGG16's blocks and its 19 layers:
    whichever fixture runs first trains it, the other reads it."""
    run = tmp_path_factory.getbasetemp() / "vgg16-run"
    if not (run / "model.keras").is_file() or (run / ".in-progress").exists():
        invoke("train", colour_dataset, "--model", "vgg16", "--weights", "none", "--image-size", 32, "--quiet",
               "--overwrite", "--out", run)
    return run
