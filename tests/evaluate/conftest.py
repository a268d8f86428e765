"""A calibrated copy of the session's TinyNet run, which the calibrate and explain tests only read."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import invoke


@pytest.fixture(scope="session")
def calibrated_run(tiny_run, colour_dataset, tmp_path_factory):
    """A copy of `tiny_run` after `tlcli calibrate --data` on the colour images with two validation
    images filed under a wrong class: (the run directory, that dataset, calibrate's --json report).

    On the true labels tiny_run is right on every validation image, so the log loss falls for
    ever as the temperature falls and the fit stops at the end of its range; the two mistakes
    put the best temperature inside it."""
    root = tmp_path_factory.mktemp("calibrated")
    data = root / "data"
    for split in ("train", "val"):
        shutil.copytree(colour_dataset / split, data / split)
    shutil.move(data / "val" / "red" / "red_0.png", data / "val" / "green" / "red_0.png")
    shutil.move(data / "val" / "green" / "green_0.png", data / "val" / "blue" / "green_0.png")
    run = shutil.copytree(tiny_run, root / "run")
    return run, data, json.loads(invoke("calibrate", run, "--data", data, "--json").stdout)
