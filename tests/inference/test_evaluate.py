"""`tlcli evaluate` end to end, on the shared tiny trained run and the colour fixtures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics

from helpers import MARKUP_NAMES, invoke, relabelled_run, runner
from tlcli.cli import app

REPORT_FILES = ("evaluation.json", "classification_report.txt", "confusion_matrix.png", "calibration.png",
                "misclassified.csv", "worst_losses.png", "report.html")


def _evaluate(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def _copy_classes(source: Path, target: Path, classes) -> Path:
    for name in classes:
        shutil.copytree(source / name, target / name)
    return target


@pytest.fixture(scope="module")
def evaluated(tiny_run, colour_dataset, tmp_path_factory):
    """One evaluation with --json into --out, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("evaluation")
    result = _evaluate(tiny_run, colour_dataset, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout), out


@pytest.fixture(scope="module")
def evaluated_with_tta(tiny_run, colour_dataset, tmp_path_factory):
    """The same evaluation as `evaluated`, with --tta."""
    out = tmp_path_factory.mktemp("evaluation-tta")
    result = _evaluate(tiny_run, colour_dataset, "--tta", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout), out


def test_json_numbers_equal_scikit_learn_on_the_predicted_probabilities(evaluated, tiny_run, colour_dataset):
    result, report, _ = evaluated
    assert "test/ split" in result.stderr
    # The same images through `tlcli predict`, scored with scikit-learn directly.
    predicted = runner.invoke(app, ["predict", str(tiny_run), str(colour_dataset / "test"),
                                    "--format", "json", "--top-k", "3"])
    rows = json.loads(predicted.stdout)
    classes = ["blue", "green", "red"]
    y_true = np.array([classes.index(Path(row["path"]).parent.name) for row in rows])
    probabilities = np.zeros((len(rows), 3))
    for i, row in enumerate(rows):
        for name_key, probability_key in (("prediction", "probability"), ("class_2", "probability_2"),
                                          ("class_3", "probability_3")):
            probabilities[i, classes.index(row[name_key])] = row[probability_key]
    probabilities /= probabilities.sum(axis=1, keepdims=True)  # predict rounds to 6 decimals
    y_pred = probabilities.argmax(axis=1)

    assert report["samples"] == len(rows) == 12
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert report["f1_macro"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert report["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y_true, y_pred))
    assert report["log_loss"] == pytest.approx(metrics.log_loss(y_true, probabilities), abs=1e-4)
    assert report["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y_true, probabilities, multi_class="ovr"), abs=1e-3)
    assert report["brier"] == pytest.approx(metrics.brier_score_loss(y_true, probabilities, labels=[0, 1, 2]), abs=1e-4)
    assert 0 <= report["ece"] <= 1 and sum(row["count"] for row in report["calibration_bins"]) == 12
    labels = [classes.index(name) for name in report["classes"]]
    assert report["confusion_matrix"] == metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    for key in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "f1_weighted", "top_k_accuracy", "roc_auc", "log_loss", "per_class", "confusion_matrix",
                "classes", "most_confused", "zero_division", "notes", "ece", "brier", "calibration_bins"):
        assert key in report
    assert report["top_k_accuracy"] is None  # 3 classes: top-5 says nothing
    matrix = np.array(report["confusion_matrix"])  # a 0/0 needs a class never predicted, or never true
    zero_division = bool((matrix.sum(axis=0) == 0).any() or (matrix.sum(axis=1) == 0).any())
    assert any("zero_division=0" in note for note in report["notes"]) == zero_division


def test_report_files_are_written_and_agree_with_the_json(evaluated):
    _, report, out = evaluated
    assert sorted(path.name for path in out.iterdir()) == sorted([*REPORT_FILES, ".tlcli"])  # an evaluation folder
    assert json.loads((out / "evaluation.json").read_text()) == {k: v for k, v in report.items() if k != "reports"}
    rows = list(csv.DictReader((out / "misclassified.csv").open()))
    assert len(rows) == report["misclassified"] == round(report["samples"] * (1 - report["accuracy"]))
    text = (out / "classification_report.txt").read_text()
    assert "macro avg" in text
    assert ("zero_division=0" in text) == any("zero_division=0" in note for note in report["notes"])
    for name in ("confusion_matrix.png", "worst_losses.png", "calibration.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and 400 <= image.size[0] <= 4000 and 250 <= image.size[1] <= 4000


def test_misclassified_csv_lists_every_mistake(tiny_run, colour_dataset, tmp_path):
    # The same image filed under two classes: whatever the model says, one of the two is a mistake.
    data = tmp_path / "data"
    shutil.copytree(colour_dataset / "test", data)
    red = sorted((data / "red").iterdir())[0]
    shutil.copy(red, data / "green" / f"copy-of-red{red.suffix}")
    result = _evaluate(tiny_run, data, "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = list(csv.DictReader((tmp_path / "out" / "misclassified.csv").open()))
    assert rows and len(rows) == report["misclassified"]
    assert list(rows[0]) == ["path", "true", "predicted", "confidence", "true_probability"]
    assert all(row["true"] != row["predicted"] and Path(row["path"]).is_file() for row in rows)
    assert {Path(row["path"]).name for row in rows} & {red.name, f"copy-of-red{red.suffix}"}


def test_reports_go_to_the_run_directory_by_default(tiny_run, colour_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("labels.txt", "config.json"):
        shutil.copy(tiny_run / name, run / name)
    (run / "model.keras").symlink_to(tiny_run / "model.keras")
    result = _evaluate(run, colour_dataset, "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert all((run / name).is_file() for name in REPORT_FILES)
    assert "top_2_accuracy" in result.stdout and "Per class" in result.stdout
    assert json.loads((run / "evaluation.json").read_text())["top_k"] == 2


def test_fail_under_gates_the_exit_code(evaluated, tiny_run, colour_dataset):
    _, report, out = evaluated
    passing = _evaluate(tiny_run, colour_dataset, "--out", out, "--overwrite", "--fail-under", "accuracy=0",
                        "--fail-under", f"f1_macro={report['f1_macro'] - 0.01}")
    assert passing.exit_code == 0, passing.output
    failing = _evaluate(tiny_run, colour_dataset, "--out", out, "--overwrite", "--fail-under", "accuracy=0",
                        "--fail-under", f"balanced_accuracy={report['balanced_accuracy'] + 0.01}")
    assert failing.exit_code == 1
    assert "balanced_accuracy" in failing.stderr and "below --fail-under" in failing.stderr
    assert "Failed: accuracy" not in failing.stderr


@pytest.mark.parametrize("spec, message", [
    ("accuracy", "is not METRIC=VALUE"),
    ("speed=0.5", "is not METRIC=VALUE"),
    ("accuracy=high", "is not METRIC=VALUE"),
    ("top_k_accuracy=0.5", "needs --top-k"),
    ("pr_auc=0.5", "two-class models"),
    ("subset_accuracy=0.5", "--fail-under subset_accuracy is not computed for a single-label run. Gate on one of: accuracy"),
])
def test_bad_fail_under_is_a_one_line_error(tiny_run, colour_dataset, tmp_path, spec, message):
    result = _evaluate(tiny_run, colour_dataset, "--out", tmp_path / "out", "--fail-under", spec)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_folder_evaluated_and_its_name_follow_the_datasets_layout(colour_dataset, tmp_path):
    """Which images evaluate reads, and the words it names them with (printed as they are:
    test_json_numbers_equal_scikit_learn_on_the_predicted_probabilities). The whole suite runs
    each case end to end too (the tests marked slow below)."""
    from tlcli.errors import TlcliError
    from tlcli.inference.evaluate import find_evaluation_folder

    assert find_evaluation_folder(colour_dataset) == (colour_dataset / "test", f"the test/ split of {colour_dataset}")
    assert find_evaluation_folder(colour_dataset / "val") == (colour_dataset / "val",
                                                              f"{colour_dataset / 'val'}, a val split folder")
    train, named = find_evaluation_folder(colour_dataset / "train")
    assert train == colour_dataset / "train" and named.startswith(f"{train}, a training split")
    some = _copy_classes(colour_dataset / "val", tmp_path / "some", ["blue", "red"])
    folder, named = find_evaluation_folder(some)
    assert folder == some and named.startswith(f"every image in {some}") and "includes its training images" in named

    root = tmp_path / "root"
    _copy_classes(colour_dataset / "train", root / "train", ["blue", "green", "red"])
    _copy_classes(colour_dataset / "val", root / "val", ["blue", "green", "red"])
    assert find_evaluation_folder(root) == (root / "val", f"the val/ split of {root}")
    shutil.rmtree(root / "val")
    with pytest.raises(TlcliError, match="no test/ or val/ split"):
        find_evaluation_folder(root)


def test_the_images_chosen_carry_the_models_labels_and_what_is_left_out_is_said(colour_dataset, tmp_path):
    """The checked images of a folder of class folders, labelled as the model's classes are
    numbered, with a note of the classes missing and the files that cannot be read."""
    from collections import Counter

    from tlcli.inference.evaluate import select_samples

    classes = ("blue", "green", "red")
    some = select_samples(_copy_classes(colour_dataset / "val", tmp_path / "some", ["blue", "red"]), classes)
    assert sorted(Counter(sample.label for sample in some.samples).items()) == [(0, 4), (2, 4)]
    assert all(sample.path.parent.name == classes[sample.label] for sample in some.samples)
    (note,) = some.notes
    assert "2 of the model's 3 classes" in note and "none of: green" in note and not some.problems

    data = _copy_classes(colour_dataset / "val", tmp_path / "data", classes)
    (data / "red" / "broken.png").write_bytes(b"not a png")
    every = select_samples(data, classes)
    assert len(every.samples) == 12 and every.notes == ()
    assert [problem.path.name for problem in every.problems] == ["broken.png"]


@pytest.mark.slow
def test_a_subset_of_the_classes_in_a_split_folder(tiny_run, colour_dataset, tmp_path):
    data = _copy_classes(colour_dataset / "val", tmp_path / "some", ["blue", "red"])
    result = _evaluate(tiny_run, data, "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 8
    assert {"blue", "red"} <= set(report["classes"]) <= {"blue", "green", "red"}
    assert report["per_class"]["blue"]["support"] == 4 and report["per_class"]["red"]["support"] == 4
    assert "every image in" in result.stderr and "includes its training images" in result.stderr
    assert "2 of the model's 3 classes" in result.stderr and "none of: green" in result.stderr


@pytest.mark.slow
def test_a_split_folder_is_evaluated_whole_and_named_as_such(tiny_run, colour_dataset, tmp_path):
    result = _evaluate(tiny_run, colour_dataset / "val", "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0 and "a val split folder" in result.stderr
    assert json.loads(result.stdout)["samples"] == 12
    train = _evaluate(tiny_run, colour_dataset / "train", "--json", "--out", tmp_path / "out", "--overwrite")
    assert "a training split" in train.stderr and json.loads(train.stdout)["samples"] == 24


def test_top_k_must_be_below_the_number_of_classes(tiny_run, colour_dataset, tmp_path):
    result = _evaluate(tiny_run, colour_dataset, "--top-k", "3", "--out", tmp_path / "out", "--overwrite")
    assert result.exit_code == 2 and "--top-k 3 does not fit a model with 3 classes" in result.stderr


@pytest.mark.slow
def test_a_root_without_test_uses_val(tiny_run, colour_dataset, tmp_path):
    root = tmp_path / "root"
    _copy_classes(colour_dataset / "train", root / "train", ["blue", "green", "red"])
    _copy_classes(colour_dataset / "val", root / "val", ["blue", "green", "red"])
    result = _evaluate(tiny_run, root, "--json", "--out", tmp_path / "out", "--overwrite")
    assert result.exit_code == 0 and "the val/ split" in result.stderr
    assert json.loads(result.stdout)["samples"] == 12

    shutil.rmtree(root / "val")
    only_train = _evaluate(tiny_run, root, "--out", tmp_path / "out2")
    assert only_train.exit_code == 2 and "no test/ or val/ split" in only_train.stderr


def test_an_unknown_class_is_a_clear_error_and_writes_nothing(tiny_run, colour_dataset, tmp_path):
    data = _copy_classes(colour_dataset / "val", tmp_path / "data", ["red"])
    shutil.copytree(colour_dataset / "val" / "blue", data / "purple")
    result = _evaluate(tiny_run, data, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "purple" in result.stderr and "not classes of the model (blue, green, red)" in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Evaluating") and lines[1].startswith("Strategy default")
    assert len(lines) == 3 and lines[2].startswith("Error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bad_files_are_skipped_and_listed(tiny_run, colour_dataset, tmp_path):
    data = _copy_classes(colour_dataset / "val", tmp_path / "data", ["blue", "green", "red"])
    (data / "red" / "broken.png").write_bytes(b"not a png")
    result = _evaluate(tiny_run, data, "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["samples"] == 12
    assert [Path(problem["path"]).name for problem in report["skipped"]] == ["broken.png"]
    assert "broken.png" in result.stderr


def test_class_names_and_paths_print_as_written(tiny_run, colour_dataset, tmp_path):
    run = relabelled_run(tiny_run, tmp_path / "run [i]a:x:b", MARKUP_NAMES)
    data = tmp_path / "data"
    for colour, name in zip(("blue", "green", "red"), MARKUP_NAMES):
        shutil.copytree(colour_dataset / "test" / colour, data / name)
    broken = data / MARKUP_NAMES[0] / "[bold]broken.png"
    broken.write_bytes(b"not a png")
    result = _evaluate(run, data, "--out", tmp_path / "reports")
    assert result.exit_code == 0, result.output
    per_class = result.stdout.split("Per class")[1]
    assert all(f"│ {name} " in per_class for name in MARKUP_NAMES)
    assert f"Evaluating {run / 'model.keras'} on" in result.stderr and "❌" not in result.output
    assert "Skipped 1 file(s) that cannot be read:" in result.stderr and f"  {broken}: " in result.stderr


def test_the_zero_division_note_shows_only_when_a_class_has_no_predicted_or_no_true_images(
        tiny_run, colour_dataset, tmp_path):
    image = colour_dataset / "test" / "red" / "red_0.png"
    predicted = json.loads(runner.invoke(app, ["predict", str(tiny_run), str(image), "--format", "json"]).stdout)
    predicted = predicted[0]["prediction"]
    other = next(name for name in ("blue", "green", "red") if name != predicted)
    # Filed under its predicted class, every class present is predicted; under another, one never is.
    for folder, applies in ((predicted, False), (other, True)):
        data, out = tmp_path / folder / "data", tmp_path / folder / "reports"
        (data / folder).mkdir(parents=True)
        shutil.copy(image, data / folder)
        result = _evaluate(tiny_run, data, "--out", out)
        assert result.exit_code == 0, result.output
        assert ("zero_division=0" in result.stderr) == applies
        assert ("zero_division=0" in (out / "classification_report.txt").read_text()) == applies
        notes = json.loads((out / "evaluation.json").read_text())["notes"]
        assert any("zero_division=0" in note for note in notes) == applies


def test_tta_scores_the_mean_of_image_and_mirror_with_the_single_view_beside(
        evaluated, evaluated_with_tta, tiny_run, colour_dataset):
    from tlcli.data.dataset import load_dataset
    from tlcli.data.pipeline import image_dataset
    from tlcli.models.saved import load_run_model

    _, plain, _ = evaluated
    result, report, out = evaluated_with_tta
    assert "tta" not in plain and "Test-time augmentation" not in evaluated[0].stderr
    assert "Test-time augmentation: on (flip, 2 views: the image and its horizontal mirror)" in result.stderr
    tta = report["tta"]
    assert (tta["views"], tta["count"]) == ("flip", 2)
    assert list(tta["accuracy_per_view"]) == ["image", "image, mirrored"]
    # View 0 is the image as it is: the single view scores what evaluate without --tta does.
    single = tta["single_view"]
    assert single["samples"] == plain["samples"] == 12
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert single[key] == plain[key]
    for key in ("log_loss", "roc_auc", "ece", "brier"):
        assert single[key] == pytest.approx(plain[key], abs=1e-5)
    assert tta["accuracy_per_view"]["image"] == plain["accuracy"]

    # The report's own numbers are those of the mean of model(image) and model(mirror), by hand.
    model, info = load_run_model(tiny_run)
    samples = load_dataset(colour_dataset).split("test")
    pixels = np.concatenate([images.numpy() for images, _ in image_dataset(samples, info.image_size, 64)])
    y_true = np.array([sample.label for sample in samples])
    mirrored = model(pixels[:, :, ::-1].copy(), training=False).numpy()
    by_hand = (model(pixels, training=False).numpy() + mirrored) / 2
    assert report["accuracy"] == metrics.accuracy_score(y_true, by_hand.argmax(axis=1))
    assert report["log_loss"] == pytest.approx(metrics.log_loss(y_true, by_hand), abs=1e-5)
    assert report["log_loss"] != pytest.approx(plain["log_loss"], abs=1e-4)  # the mirror does change the answers
    assert tta["accuracy_per_view"]["image, mirrored"] == metrics.accuracy_score(y_true, mirrored.argmax(axis=1))

    assert json.loads((out / "evaluation.json").read_text()) == {k: v for k, v in report.items() if k != "reports"}
    text = (out / "classification_report.txt").read_text()
    assert "single view  with TTA (flip, 2 views)" in text and "the image and its horizontal mirror" in text


def test_tta_views_crops_prints_both_accuracies_side_by_side(tiny_run, colour_dataset, tmp_path):
    result = _evaluate(tiny_run, colour_dataset, "--tta-views", "crops", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert (report["tta"]["views"], report["tta"]["count"]) == ("crops", 10)
    assert "single view" in result.stdout and "with TTA (crops, 10 views)" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("│ accuracy ")]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["accuracy", f"{report['tta']['single_view']['accuracy']:.4f}", f"{report['accuracy']:.4f}"]


def test_explaining_more_worst_losses_than_a_picture_holds_is_capped_and_said(tiny_run, colour_dataset, tmp_path,
                                                                              monkeypatch):
    """--explain 1000 on 260 images once drew a 792 x 75,400 px picture. The cap (100, as explain's
    contact sheet) is lowered to 2 here, so that 12 images are more than it."""
    monkeypatch.setattr("tlcli.inference.explain.SHEET_IMAGES", 2)
    invoke("evaluate", tiny_run, colour_dataset / "test", "--explain", 1000, "--out", tmp_path / "reports")
    report = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    assert len(report["explained"]) == 2
    assert any(note.startswith("--explain 1000: worst_losses_explained.png shows the 2 worst") for note in report["notes"])
