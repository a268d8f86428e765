"""`tlcli predict`: top-k classes per image, bad files skipped, the same image the same answer."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import MARKUP_NAMES, relabelled_run, run_with_model, runner
from tlcli.cli import app
from tlcli.data.images import Problem
from tlcli.inference.predict import Prediction, predict_files
from tlcli.models.saved import load_run_model

FIELDS = ["path", "prediction", "probability", "class_2", "probability_2", "class_3", "probability_3"]


def _predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


@pytest.fixture
def photos(colour_dataset, tmp_path) -> Path:
    """Good images in a folder and a subfolder, with a corrupt image and a text file among them."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    shutil.copy(colour_dataset / "test" / "red" / "red_0.png", folder / "a_red.png")
    shutil.copy(colour_dataset / "test" / "blue" / "blue_0.png", folder / "c_blue.png")
    shutil.copy(colour_dataset / "test" / "green" / "green_0.png", folder / "more" / "d_green.png")
    (folder / "b_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 20)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_corrupt_file_is_reported_and_the_rest_predicted(tiny_run, photos):
    result = _predict(tiny_run, photos, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == FIELDS
    assert [Path(row["path"]).name for row in rows] == ["a_red.png", "c_blue.png", "d_green.png"]
    for row in rows:
        probabilities = [float(row[key]) for key in ("probability", "probability_2", "probability_3")]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert {row["prediction"], row["class_2"], row["class_3"]} == {"blue", "green", "red"}
    assert "b_corrupt.jpg" in result.stderr and "notes.txt" not in result.stderr
    assert "Predicted 3 image(s); skipped 1" in result.stderr


def test_the_same_image_gets_the_same_probabilities_alone_or_in_a_batch(tiny_run, photos):
    alone = json.loads(_predict(tiny_run, photos / "more" / "d_green.png", "--format", "json").stdout)
    together = json.loads(_predict(tiny_run, photos, "--format", "json", "--batch-size", "2").stdout)
    in_batch = next(row for row in together if row["path"].endswith("d_green.png"))
    assert alone[0]["prediction"] == in_batch["prediction"]
    for key in ("probability", "probability_2", "probability_3"):
        assert alone[0][key] == pytest.approx(in_batch[key], abs=1e-5)


def test_json_from_globs_is_a_list_of_rows_with_top_k_capped_at_the_classes(tiny_run, photos):
    result = _predict(tiny_run, f"{photos}/**/*.png", "--format", "json", "--top-k", "9")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [Path(row["path"]).name for row in rows] == ["a_red.png", "c_blue.png", "d_green.png"]
    assert all(list(row) == FIELDS for row in rows)
    one = json.loads(_predict(tiny_run, photos / "a_red.png", "--format", "json", "--top-k", "1").stdout)
    assert list(one[0]) == ["path", "prediction", "probability"]


def test_a_top_k_beyond_the_classes_says_so(tiny_run, photos):
    capped = _predict(tiny_run, photos / "a_red.png", "--top-k", "5")
    assert capped.exit_code == 0 and "top 3" in capped.stdout and "top 4" not in capped.stdout
    assert "Note: --top-k 5 is more than the model's 3 classes; showing all 3." in capped.stderr
    assert "Note" not in _predict(tiny_run, photos / "a_red.png", "--top-k", "3").stderr


def test_table_output_names_every_image(tiny_run, photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    result = _predict(tiny_run, "photos")
    assert result.exit_code == 0
    assert all(path in result.stdout for path in ("photos/a_red.png", "photos/more/d_green.png"))
    assert "prediction" in result.stdout and "%" in result.stdout


def test_missing_paths_and_nothing_readable_are_errors(tiny_run, photos, tmp_path):
    missing = _predict(tiny_run, photos, tmp_path / "nowhere")
    assert missing.exit_code == 2 and "nowhere does not exist" in missing.stderr and missing.stdout == ""
    no_match = _predict(tiny_run, f"{tmp_path}/*.webp")
    assert no_match.exit_code == 2 and "matches no image files" in no_match.stderr
    unreadable = _predict(tiny_run, photos / "b_corrupt.jpg", photos / "notes.txt", "--format", "csv")
    assert unreadable.exit_code == 2
    assert "notes.txt: not an image file type" in unreadable.stderr
    assert "None of the 2 file(s) could be read" in unreadable.stderr


def test_predict_files_keeps_file_order_across_chunks(tiny_run, photos):
    model, info = load_run_model(tiny_run)
    paths = [photos / "a_red.png", photos / "b_corrupt.jpg", photos / "c_blue.png", photos / "more" / "d_green.png"]
    results = list(predict_files(model, paths, info.image_size, batch_size=1, chunk_size=3))
    assert [result.path for result in results] == paths
    assert [type(result) for result in results] == [Prediction, Problem, Prediction, Prediction]
    assert results[0].probabilities.shape == (3,)
    assert np.isclose(results[0].probabilities.sum(), 1, atol=1e-5)


def test_paths_and_class_names_print_as_written(tiny_run, colour_dataset, tmp_path, monkeypatch):
    """A path through a folder `x[` to `b].png` reads as the closing tag [/b]: Rich raised MarkupError."""
    run = relabelled_run(tiny_run, tmp_path / "run", MARKUP_NAMES)
    monkeypatch.chdir(tmp_path)
    Path("x[").mkdir()
    shutil.copy(colour_dataset / "test" / "red" / "red_0.png", "x[/b].png")
    Path("x[/[bold]broken.png").write_bytes(b"not a png")
    result = _predict(run, "x[")
    assert result.exit_code == 0, result.output
    assert "x[/b].png" in result.stdout and all(name in result.stdout for name in MARKUP_NAMES)
    assert "x[/[bold]broken.png" in result.stderr and "❌" not in result.output


def _edited(model: bytes, module: str, class_name: str) -> bytes:
    """model.keras with its preprocessing layer renamed to module.class_name in config.json, by hand."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(model)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "config.json":
                content = content.replace(b'"tlcli.models.layers"', f'"{module}"'.encode())
                content = content.replace(b"BackbonePreprocessing", class_name.encode())
            target.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, message", [
    ("truncated", "is damaged or not a Keras model file"),
    ("text", "is damaged or not a Keras model file"),
    ("os.system", "names os.system in its config.json, neither a Keras nor a tlcli class"),
    ("builtins.eval", "names builtins.eval in its config.json, neither a Keras nor a tlcli class"),
])
def test_a_damaged_or_edited_model_file_is_a_one_line_error(tiny_run, photos, tmp_path, damage, message):
    """Keras said "File not found" of a truncated file that exists, and refused a hand-edited
    module with a dump of the whole architecture."""
    model = (tiny_run / "model.keras").read_bytes()
    damaged = {"truncated": model[: len(model) // 2], "text": b"not a model"}.get(damage)
    run = run_with_model(tiny_run, tmp_path / "run", damaged or _edited(model, *damage.split(".")))
    result = _predict(run, photos / "a_red.png")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"Error: {run / 'model.keras'} {message}")
    assert len(result.stderr.strip().splitlines()) == 1 and "File not found" not in result.stderr


def _run_saved_with_the_old_module(tiny_run, folder):
    """A copy of tiny_run whose model.keras names `tlcli.layers`, where tlcli's layers lived before."""
    old = run_with_model(tiny_run, folder, _edited((tiny_run / "model.keras").read_bytes(),
                                                    "tlcli.layers", "BackbonePreprocessing"))
    with zipfile.ZipFile(old / "model.keras") as archive:
        assert b'"module": "tlcli.layers"' in archive.read("config.json")
    return old


def test_a_model_saved_before_the_package_moves_still_loads(tiny_run, tmp_path):
    """Model files name the module of tlcli's layers, `tlcli.layers` before the layers moved to
    `tlcli.models.layers`; they are found by their registered names, which did not change."""
    old = _run_saved_with_the_old_module(tiny_run, tmp_path / "old")
    model, _ = load_run_model(old)
    current, _ = load_run_model(tiny_run)
    for ours, theirs in zip(model.get_weights(), current.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.subprocess
def test_a_model_saved_before_the_package_moves_loads_in_plain_keras_in_a_fresh_interpreter(tiny_run, tmp_path):
    """The same file through keras.saving.load_model in a fresh interpreter that imports only
    tlcli's layers, as a user's own serving code would."""
    old = _run_saved_with_the_old_module(tiny_run, tmp_path / "old")
    current, _ = load_run_model(tiny_run)
    script = ("import sys, keras, tlcli.models.layers\n"
              "print(keras.saving.load_model(sys.argv[1]).count_params())")
    plain = subprocess.run([sys.executable, "-c", script, str(old / "model.keras")], capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0 and int(plain.stdout.split()[-1]) == current.count_params(), plain.stderr


def _pixels(run: Path, paths) -> np.ndarray:
    """The images as the pipeline reads them for the model (decoded, RGB, resized)."""
    from tlcli.data.dataset import Sample
    from tlcli.data.pipeline import image_dataset

    _, info = load_run_model(run)
    return np.concatenate([images.numpy() for images, _ in image_dataset([Sample(p, 0) for p in paths],
                                                                         info.image_size, 64)])


def _probabilities(rows, class_names) -> np.ndarray:
    """Each row's probability of each class, from predict's JSON with --top-k covering them all."""
    ranked = [("prediction", "probability")] + [(f"class_{rank}", f"probability_{rank}")
                                                 for rank in range(2, len(class_names) + 1)]
    return np.array([[dict((row[name], row[probability]) for name, probability in ranked)[class_name]
                      for class_name in class_names] for row in rows])


def test_tta_averages_each_image_and_its_mirror_and_says_so(tiny_run, photos):
    """--tta before the paths is a plain flag: the paths are still paths."""
    plain = _predict(tiny_run, photos, "--format", "json")
    averaged = _predict(tiny_run, "--tta", photos, "--format", "json")
    assert averaged.exit_code == 0, averaged.output
    assert "Test-time augmentation: on (flip, 2 views: the image and its horizontal mirror)." in averaged.stderr
    assert "Test-time augmentation" not in plain.stderr
    plain_rows, rows = json.loads(plain.stdout), json.loads(averaged.stdout)
    assert [list(row) for row in rows] == [list(row) for row in plain_rows] and len(rows) == 3

    model, info = load_run_model(tiny_run)
    pixels = _pixels(tiny_run, [Path(row["path"]) for row in rows])
    by_hand = (model(pixels, training=False).numpy() + model(pixels[:, :, ::-1].copy(), training=False).numpy()) / 2
    with_tta = _probabilities(rows, info.class_names)
    np.testing.assert_allclose(with_tta, by_hand, atol=2e-6)  # predict rounds to 6 decimals
    assert np.abs(with_tta - _probabilities(plain_rows, info.class_names)).max() > 1e-4


def test_tta_views_crops_averages_ten_views(tiny_run, photos):
    result = _predict(tiny_run, photos / "a_red.png", "--tta-views", "crops", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "Test-time augmentation: on (crops, 10 views: the image and its four corner crops" in result.stderr
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert list(row) == FIELDS
    assert sum(float(row[key]) for key in ("probability", "probability_2", "probability_3")) == pytest.approx(1, abs=1e-4)
    unknown = _predict(tiny_run, photos, "--tta-views", "rotations")
    message = " ".join(unknown.output.replace("│", " ").split())  # as one line, out of Typer's box
    assert unknown.exit_code == 2 and "'--tta-views': Value error, 'rotations' is not one of 'flip', 'crops'" in message
