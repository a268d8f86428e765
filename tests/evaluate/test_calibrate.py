"""`tlcli calibrate`: temperature scaling fitted on the validation images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import invoke, write_digits_dataset


@pytest.fixture(scope="module")
def overconfident_run(tmp_path_factory):
    """A head trained by gradient to fit eight digits a class perfectly: sure of itself, often wrong."""
    root = tmp_path_factory.mktemp("calibrate")
    data = write_digits_dataset(root / "digits", {"train": 8, "val": 30, "test": 30})
    run = root / "run"
    invoke("train", data, "--model", "vgg16", "--weights", "none", "--image-size", 32, "--head-solver", "gradient",
           "--dense", 128, "--epochs", 150, "--early-stopping", 0, "--learning-rate", 0.01, "--batch-size", 16,
           "--quiet", "--out", run)
    return run, data


def _test_report(run, data, out):
    return json.loads(invoke("evaluate", run, data / "test", "--json", "--out", out).stdout)


def _top_classes(run, data):
    rows = json.loads(invoke("predict", run, data / "test", "--format", "json").stdout)
    return {row["path"]: row["prediction"] for row in rows}


def test_calibration_lowers_the_error_on_held_out_images_and_keeps_every_top_class(overconfident_run, tmp_path):
    run, data = overconfident_run
    before, classes_before = _test_report(run, data, tmp_path / "before"), _top_classes(run, data)
    result = json.loads(invoke("calibrate", run, "--json").stdout)
    after, classes_after = _test_report(run, data, tmp_path / "after"), _top_classes(run, data)

    assert result["temperature"] > 1  # an overconfident model is softened
    assert result["after"]["log_loss"] < result["before"]["log_loss"] and result["images"] == 300
    assert after["ece"] < before["ece"] and after["log_loss"] < before["log_loss"]
    assert classes_after == classes_before and after["accuracy"] == before["accuracy"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == pytest.approx(result["temperature"])

    # Calibrating again fits T on the model's own output, not on calibrated probabilities.
    again = json.loads(invoke("calibrate", run, "--json").stdout)
    assert again["temperature"] == pytest.approx(result["temperature"], rel=1e-3)
    assert np.isclose(again["before"]["ece"], result["before"]["ece"], atol=1e-4)


def test_a_run_without_validation_images_is_refused_before_anything_changes(tiny_run, colour_dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(colour_dataset / "train", data / "train")  # no val/ folder, and no val split asked for
    config.update(data=str(data), val_split=0.0)
    (run / "config.json").write_text(json.dumps(config))
    model = (run / "model.keras").read_bytes()
    result = invoke("calibrate", run, expect=2)
    assert "has no validation images" in result.output and "--val-split" in result.output
    assert (run / "model.keras").read_bytes() == model
