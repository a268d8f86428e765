"""`tlcli calibrate`: temperature scaling fitted on the validation images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

import tiny_backbone
from helpers import TINY_TRAIN, invoke, one_line_error, runner, write_digits_dataset
from tlcli.cli import app


@pytest.fixture(scope="module")
def overconfident_run(tmp_path_factory):
    """A head trained by gradient to fit eight digits a class perfectly: sure of itself, often wrong."""
    root = tmp_path_factory.mktemp("calibrate")
    data = write_digits_dataset(root / "digits", {"train": 8, "val": 30, "test": 30})
    run = root / "run"
    invoke("train", data, "--model", tiny_backbone.NAME, "--weights", "none", "--image-size", 32,
           "--head-solver", "gradient", "--dense", 128, "--epochs", 40, "--early-stopping", 0,
           "--learning-rate", 0.03, "--batch-size", 16, "--quiet", "--out", run)
    return run, data


def _test_report(run, data, out):
    return json.loads(invoke("evaluate", run, data / "test", "--json", "--out", out).stdout)


def _top_classes(run, data):
    rows = json.loads(invoke("predict", run, data / "test", "--format", "json").stdout)
    return {row["path"]: row["prediction"] for row in rows}


@pytest.mark.slow
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

    # Calibrating again fits T on the model's own output, not on calibrated probabilities; MODEL may
    # be the run's model.keras as well as its directory.
    again = json.loads(invoke("calibrate", run / "model.keras", "--json").stdout)
    assert again["temperature"] == pytest.approx(result["temperature"], rel=1e-3)
    assert np.isclose(again["before"]["ece"], result["before"]["ece"], atol=1e-4)


def _softmax_at(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), computed here as the calibration is defined."""
    scaled = np.log(probabilities.astype(np.float64)) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _validation_pixels(data, image_size: int):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset

    samples = load_dataset(data).split("val")
    batches = list(image_dataset(samples, image_size, 64))
    pixels = np.concatenate([images.numpy() for images, _ in batches])
    return pixels, np.concatenate([labels.numpy() for _, labels in batches])


def test_the_temperature_minimises_the_validation_log_loss_and_keeps_every_top_class(
        tiny_run, calibrated_run, tmp_path):
    from tlcli.models.saved import load_run_model

    run, data, result = calibrated_run
    model, info = load_run_model(tiny_run)
    pixels, y_true = _validation_pixels(data, info.image_size)
    before = model(pixels, training=False).numpy()
    temperature = result["temperature"]

    # scikit-learn's log loss is least at T: lower than a hundredth either side, inside the range.
    def log_loss(at: float) -> float:
        return sklearn_metrics.log_loss(y_true, _softmax_at(before, at), labels=[0, 1, 2])

    assert 0.06 < temperature < 19 and result["images"] == 12
    assert log_loss(temperature) < min(log_loss(temperature * 1.01), log_loss(temperature / 1.01))
    assert result["before"]["log_loss"] == pytest.approx(sklearn_metrics.log_loss(y_true, before), rel=1e-4)
    assert result["after"]["log_loss"] == pytest.approx(log_loss(temperature), rel=1e-4)
    assert result["after"]["log_loss"] < result["before"]["log_loss"]

    # The saved model now answers softmax(log p / T): the same top class for every image.
    calibrated, _ = load_run_model(run)
    after = calibrated(pixels, training=False).numpy()
    np.testing.assert_allclose(after, _softmax_at(before, temperature), atol=1e-5)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
    saved = json.loads((run / "metrics.json").read_text())["calibration"]
    assert saved["temperature"] == pytest.approx(temperature) and saved["images"] == 12

    # Calibrating again fits T on the model's own output, not on calibrated probabilities.
    again_run = shutil.copytree(run, tmp_path / "run")
    again = json.loads(invoke("calibrate", again_run, "--data", data, "--json").stdout)
    assert again["temperature"] == pytest.approx(temperature, rel=1e-3)
    assert np.isclose(again["before"]["ece"], result["before"]["ece"], atol=1e-4)


def test_a_run_without_validation_images_is_refused_before_anything_changes(tiny_run, colour_dataset, tmp_path):
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


def test_fewer_than_ten_validation_images_cannot_support_a_temperature(tiny_run, colour_dataset, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    data = tmp_path / "data"
    shutil.copytree(colour_dataset / "train", data / "train")
    for name in ("blue", "green", "red"):  # three validation images each: nine in all
        for image in sorted((colour_dataset / "val" / name).iterdir())[:3]:
            (data / "val" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, data / "val" / name / image.name)
    before = (run / "model.keras").read_bytes()
    result = runner.invoke(app, ["calibrate", str(run), "--data", str(data)], terminal_width=400)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1
    assert "has 9 validation image(s) for this run; a temperature fitted on fewer than 10 says nothing" in lines[0]
    assert (run / "model.keras").read_bytes() == before


def test_validation_images_classified_all_right_cannot_support_a_temperature(solved_run, tmp_path):
    """On perfectly separated validation images a temperature once ran to 0.206 and made new
    images' log loss four times worse."""
    run = tmp_path / "run"
    shutil.copytree(solved_run, run)
    before = (run / "model.keras").read_bytes()
    result = runner.invoke(app, ["calibrate", str(run)], terminal_width=400)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and "classifies all 12 validation images" in lines[0]
    assert (run / "model.keras").read_bytes() == before


def test_another_model_file_of_the_run_is_refused_and_the_runs_model_left_alone(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(run / "model.keras", run / "other.keras")
    before = (run / "model.keras").read_bytes()
    message = one_line_error(runner.invoke(app, ["calibrate", str(run / "other.keras")], terminal_width=400))
    assert "other.keras is not the run's model.keras" in message and f"Pass {run}" in message
    assert (run / "model.keras").read_bytes() == before


def test_a_read_only_run_is_one_line(tiny_run, tmp_path, make_read_only):
    run = tmp_path / "runs" / "run"
    shutil.copytree(tiny_run, run)
    make_read_only(run.parent)
    result = runner.invoke(app, ["calibrate", str(run)], terminal_width=400)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and "cannot write in" in lines[0], result.output


def test_evaluating_with_a_label_file_changed_since_training_says_so(colour_dataset, tmp_path):
    """Swapped labels once scored accuracy 0.0 without a word."""
    data = tmp_path / "data"
    shutil.copytree(colour_dataset, data)
    labels = tmp_path / "labels" / "labels.csv"  # apart from the reports: a label file's folder is the dataset's
    labels.parent.mkdir()
    rows = [(path.relative_to(data).as_posix(), path.parent.name) for path in sorted(data.rglob("*.png"))]
    labels.write_text("path,label\n" + "".join(f"{path},{label}\n" for path, label in rows))
    invoke("train", data, "--labels", labels, *TINY_TRAIN, "--out", tmp_path / "run")
    swap = {"red": "green", "green": "red", "blue": "blue"}
    labels.write_text("path,label\n" + "".join(f"{path},{swap[label]}\n" for path, label in rows))
    invoke("evaluate", tmp_path / "run", data, "--out", tmp_path / "reports")
    notes = json.loads((tmp_path / "reports" / "evaluation.json").read_text())["notes"]
    assert any(note.startswith(f"{labels} has changed since the run was trained") for note in notes)
