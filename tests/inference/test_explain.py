"""`tlcli explain` and `evaluate --explain`: maps of saved models, run for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_backbone
from helpers import invoke, one_line_error, peak_on_square, runner, write_patch_dataset
from tlcli.cli import app
from tlcli.inference.gradcam import GradCam
from tlcli.inference.heatmaps import CAPTION_LINE, DISPLAY_SIDE, GAP, TILE_SIDE, Heatmap

PATCH_IMAGE_SIZE = 64  # TinyNet's last convolution (block3_conv2, after two poolings) is 16 x 16 here


def _explain(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    """TinyNet (random base, solved head) taught that a bright square in a corner makes "patch"."""
    root = tmp_path_factory.mktemp("patch")
    corners = write_patch_dataset(root / "data", {"train": 8, "val": 4, "test": 4}, PATCH_IMAGE_SIZE)
    invoke("train", root / "data", "--model", tiny_backbone.NAME, "--weights", "none", "--image-size",
           PATCH_IMAGE_SIZE, "--quiet", "--out", root / "run")
    return root / "run", root / "data", corners


@pytest.fixture(scope="module")
def patch_explained(patch_run, tmp_path_factory):
    """`tlcli explain` of the patch run's test images, patch/ then plain/: (the folder, the result)."""
    run, data, _ = patch_run
    out = tmp_path_factory.mktemp("patch-maps") / "maps"
    return out, invoke("explain", run, data / "test", "--out", out, "--json")


def test_the_map_peaks_in_the_corner_whose_bright_patch_decides_the_class(patch_run, patch_explained):
    _, _, corners = patch_run
    out, result = patch_explained
    records = [record for record in json.loads(result.stdout) if record["path"] in corners]

    assert len(records) == 4 and {record["predicted"] for record in records} == {"patch"}
    for record in records:
        bottom, right = corners[record["path"]]
        half = PATCH_IMAGE_SIZE / 2
        assert record["grid"] == [PATCH_IMAGE_SIZE // 4] * 2
        assert (record["peak"]["y"] >= half, record["peak"]["x"] >= half) == (bottom, right), record
        assert Path(record["picture"]).parent == out
    assert len(set(corners[record["path"]] for record in records)) > 1  # not one corner for all
    assert "Pictures in" in result.stderr and "contact sheet contact_sheet.png" in result.stderr


@pytest.fixture(scope="module")
def squares_explained(square_run, tmp_path_factory):
    """`tlcli explain --json` of the fine-placement run's 20 test patch images by each --method:
    {method: (the records, explain.json, stderr)}."""
    run, data, _ = square_run
    explained = {}
    for method in ("auto", "gradcam", "occlusion"):
        out = tmp_path_factory.mktemp(f"squares-{method}") / "maps"
        result = invoke("explain", run, data / "test" / "patch", "--method", method, "--out", out, "--json")
        explained[method] = (json.loads(result.stdout), json.loads((out / "explain.json").read_text()), result.stderr)
    return explained


def _hit_rate(records, squares) -> float:
    return np.mean([peak_on_square(record["peak"], squares[record["path"]]) for record in records])


def test_the_default_maps_peak_on_the_square_as_occlusions_do(square_run, squares_explained):
    """The issue's test, on TinyNet: a peak within half the square's side of it. Occlusion, which
    asks the model itself, is the reference. Measured: 20 of 20 for each (auto chose Grad-CAM)."""
    _, _, squares = square_run
    records, saved, stderr = squares_explained["auto"]
    reference, _, _ = squares_explained["occlusion"]

    assert len(records) == len(reference) == 20 and {record["predicted"] for record in records} == {"patch"}
    assert _hit_rate(reference, squares) >= 0.9
    assert _hit_rate(records, squares) >= 0.9
    assert saved["method"] == "gradcam" and {record["method"] for record in records} == {"gradcam"}
    assert "Note: method auto: Grad-CAM, as its maps of 8 image(s) all passed the deletion test" in stderr
    assert saved["method_reason"] in stderr


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_each_method_says_in_json_which_it_is_and_how_faithful_each_map_is(squares_explained, method):
    records, saved, stderr = squares_explained[method]

    assert {record["method"] for record in records} == {method} and saved["method"] == method
    assert all(0 <= record["faithfulness"] <= 1 and record["faithful"] == (record["faithfulness"] > 0.75)
               and record["probability_hottest_hidden"] < record["probability"] for record in records)
    assert np.mean([record["faithful"] for record in records]) >= 0.9  # measured: 20 of 20 for each
    assert saved["deletion_test"] == {"window": 24, "random_regions": 16}
    if method == "occlusion":
        assert saved["occlusion"] == {"window": 20, "step": 4, "fill": "mean colour"} and saved["backbone_layer"] is None
        assert {tuple(record["grid"]) for record in records} == {(16, 16)}
    else:
        assert saved["backbone_layer"] == tiny_backbone.TINY.last_conv_layer and "occlusion" not in saved
    assert "method auto" not in stderr  # asked for: no choice to explain


def _pointing_elsewhere(monkeypatch):
    """Make Grad-CAM's maps point away from the evidence: each map moved by half the image."""
    right = GradCam.__call__

    def moved(self, images, classes):
        probabilities, heatmaps = right(self, images, classes)
        return probabilities, [Heatmap(heatmap.class_index, heatmap.probability,
                                       np.roll(heatmap.values, np.array(heatmap.values.shape) // 2, axis=(0, 1)))
                               for heatmap in heatmaps]

    monkeypatch.setattr(GradCam, "__call__", moved)


def test_auto_draws_with_occlusion_when_grad_cams_maps_fail_the_deletion_test(square_run, monkeypatch, tmp_path):
    run, data, squares = square_run
    _pointing_elsewhere(monkeypatch)
    result = invoke("explain", run, data / "test" / "patch", "--out", tmp_path / "maps", "--json")
    records = json.loads(result.stdout)

    assert {record["method"] for record in records} == {"occlusion"}
    assert "Note: method auto: occlusion, as only" in result.stderr and "of Grad-CAM's maps of 8 image(s)" in result.stderr
    assert _hit_rate(records, squares) >= 0.9


def test_a_map_that_is_not_faithful_says_so_and_scores_below_right_ones(square_run, squares_explained, monkeypatch,
                                                                        tmp_path):
    """The issue's second test, read from --json: right maps (Grad-CAM's own) against wrong ones
    (the same maps moved), on the same images."""
    run, data, squares = square_run
    _pointing_elsewhere(monkeypatch)
    result = invoke("explain", run, data / "test" / "patch", "--method", "gradcam", "--out", tmp_path / "maps", "--json")
    wrong = json.loads(result.stdout)
    right, _, _ = squares_explained["gradcam"]
    records = right + wrong
    on = np.array([peak_on_square(record["peak"], squares[record["path"]]) for record in records])
    scores = np.array([record["faithfulness"] for record in records])

    assert on[:20].mean() >= 0.9 and on[20:].mean() <= 0.1
    assert scores[on].mean() >= scores[~on].mean() + 0.2  # measured: 0.98 against 0.53
    unfaithful = [record for record in wrong if not record["faithful"]]
    assert len(unfaithful) >= 14  # measured: 16 of 20
    assert f"Note: {len(unfaithful)} of 20 map(s) are not faithful" in result.stderr.replace("\n", " ")
    heights = {}
    for record in wrong:
        with Image.open(record["picture"]) as picture:
            heights.setdefault(record["faithful"], set()).add(picture.height)
    assert heights[False] == {height + 2 * CAPTION_LINE for height in heights[True]}  # a note of two lines


def test_the_table_shows_each_maps_faithfulness_as_json_gives_it(square_run, monkeypatch, tmp_path):
    """The terminal's table scores each map as --json does, and says which are not faithful (the
    maps moved away from the evidence, as above, so that some are not)."""
    run, data, _ = square_run
    _pointing_elsewhere(monkeypatch)
    monkeypatch.setenv("COLUMNS", "1000")  # a row a line, however long pytest's folder names
    images = sorted((data / "test" / "patch").iterdir())[:6]
    records = json.loads(invoke("explain", run, *images, "--method", "gradcam", "--out", tmp_path / "a", "--json").stdout)
    table = invoke("explain", run, *images, "--method", "gradcam", "--out", tmp_path / "b").stdout
    header = next(line for line in table.splitlines() if "picture" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "path", "class", "probability", "peak (x, y)", "faithfulness", "picture"]
    for record in records:
        row = next(line for line in table.splitlines() if f" {Path(record['picture']).name} " in line)
        shown = f"{record['faithfulness']:.2f}" + ("" if record["faithful"] else " not faithful")
        assert f" {shown} " in row, (shown, row)
    assert any(not record["faithful"] for record in records) and "not faithful" in table


def test_an_unknown_method_is_refused_in_one_line(tiny_run, colour_dataset, tmp_path):
    error = one_line_error(_explain(tiny_run, colour_dataset / "test", "--method", "rise", "--out", tmp_path / "m"))
    assert error == "Error: --method rise: not a method tlcli has. Use --method auto, gradcam or occlusion."
    evaluated = runner.invoke(app, ["evaluate", str(tiny_run), str(colour_dataset), "--explain", "1",
                                    "--explain-method", "rise", "--out", str(tmp_path / "r")])
    assert one_line_error(evaluated) == ("Error: --explain-method rise: not a method tlcli has. "
                                         "Use --explain-method auto, gradcam or occlusion.")
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


def test_every_image_gets_a_picture_and_the_sheet_shows_them_all(patch_explained):
    out, _ = patch_explained

    # Numbered in input order (patch/0..3, then plain/0..3), since two files may share a name.
    assert {path.name for path in out.glob("*.png")} == {f"{n}-{(n - 1) % 4}.png" for n in range(1, 9)} | {
        "contact_sheet.png"}
    with Image.open(out / "contact_sheet.png") as sheet, Image.open(out / "1-0.png") as picture:
        assert sheet.width == GAP + 8 * (TILE_SIDE + GAP)  # one row of eight tiles
        assert picture.size[0] == GAP + 2 * (DISPLAY_SIDE + GAP)  # the image, and the image under its map
    saved = json.loads((out / "explain.json").read_text())
    assert len(saved["images"]) == 8 and saved["backbone_layer"] == tiny_backbone.TINY.last_conv_layer
    assert saved["method"] == "gradcam"  # auto's choice: its maps of the four patch images pass


def test_a_calibrated_model_explains_the_same_place_with_its_own_probabilities(
        tiny_run, calibrated_run, colour_dataset, tmp_path):
    run, _, _ = calibrated_run  # tiny_run, calibrated
    images = [colour_dataset / "test" / "red" / "red_0.png"]
    before = json.loads(invoke("explain", tiny_run, *images, "--json", "--out", tmp_path / "a").stdout)
    after = json.loads(invoke("explain", run, *images, "--json", "--out", tmp_path / "b").stdout)
    predicted = json.loads(invoke("predict", run, *images, "--format", "json").stdout)

    assert after[0]["probability"] == pytest.approx(predicted[0]["probability"], abs=1e-5)
    assert after[0]["probability"] != pytest.approx(before[0]["probability"], abs=1e-4)
    assert after[0]["peak"] == before[0]["peak"] and after[0]["class"] == before[0]["class"]


def test_an_unreadable_file_is_reported_and_the_others_are_explained(tiny_run, colour_dataset, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    good = colour_dataset / "test" / "blue" / "blue_0.png"
    result = _explain(tiny_run, bad, good, "--out", tmp_path / "maps")

    assert result.exit_code == 0, result.output
    assert f"Skipped {bad}" in result.stderr and "Explained 1 image(s); skipped 1 unreadable file(s)" in result.stderr
    assert [path.name for path in (tmp_path / "maps").glob("*.png")] != [] and not list(
        (tmp_path / "maps").glob("*broken*"))


def test_a_class_the_model_lacks_is_reported_and_the_others_are_explained(tiny_run, colour_dataset, tmp_path):
    image = colour_dataset / "test" / "blue" / "blue_0.png"
    result = _explain(tiny_run, image, "--class", "red", "--class", "purple", "--json", "--out", tmp_path / "maps")

    assert result.exit_code == 1
    assert "Skipped --class purple: not a class of the model" in result.stderr
    assert [record["class"] for record in json.loads(result.stdout)] == ["red"]


def test_only_unknown_classes_are_refused_before_anything_is_written(tiny_run, colour_dataset, tmp_path):
    result = _explain(tiny_run, colour_dataset / "test", "--class", "[bold]purple", "--out", tmp_path / "maps")

    assert result.exit_code == 2
    assert "--class [bold]purple: not a class of the model (classes: blue, green, red)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "maps").exists()


def test_a_folder_of_the_users_files_is_never_written_into(tiny_run, colour_dataset, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = _explain(tiny_run, colour_dataset / "test", "--out", mine)

    assert result.exit_code == 2 and "holds files tlcli did not write" in result.stderr
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]


def test_an_evaluate_folder_is_named_as_such_and_left_whole(tiny_run, colour_dataset, tmp_path):
    reports = tmp_path / "reports"
    invoke("evaluate", tiny_run, colour_dataset, "--out", reports)
    before = {path: path.read_bytes() for path in reports.rglob("*") if path.is_file()}
    result = _explain(tiny_run, colour_dataset / "test", "--out", reports, "--overwrite")

    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--out {reports} holds tlcli evaluate's reports, not tlcli explain's pictures" in result.stderr
    assert {path: path.read_bytes() for path in reports.rglob("*") if path.is_file()} == before


def test_explaining_again_replaces_the_earlier_pictures(patch_run, patch_explained, tmp_path):
    run, data, _ = patch_run
    out = shutil.copytree(patch_explained[0], tmp_path / "maps")  # an earlier explain's folder
    first = {path.name for path in out.glob("*.png")}
    refused = runner.invoke(app, ["explain", str(run), str(data / "test" / "plain" / "0.png"), "--out", str(out)])
    assert refused.exit_code != 0 and "already exists. Use --overwrite" in refused.output
    invoke("explain", run, data / "test" / "plain" / "0.png", "--out", out, "--overwrite")

    assert len(first) == 9  # eight images and the contact sheet
    assert {path.name for path in out.glob("*.png")} == {"1-0.png", "contact_sheet.png"}


def test_evaluate_explains_its_worst_losses_beside_the_gallery(tiny_run, colour_dataset, tmp_path):
    reports = tmp_path / "reports"
    report = json.loads(invoke("evaluate", tiny_run, colour_dataset, "--explain", 2, "--json",
                               "--out", reports).stdout)
    # The two highest losses, -log p(true class), from predict's probabilities of all three classes.
    rows = json.loads(invoke("predict", tiny_run, colour_dataset / "test", "--format", "json").stdout)
    losses = {row["path"]: -np.log(next(row[f"probability{suffix}"] for suffix in ("", "_2", "_3")
                                        if row["prediction" if not suffix else f"class{suffix}"]
                                        == Path(row["path"]).parent.name)) for row in rows}
    worst = sorted(losses, key=losses.get, reverse=True)[:2]

    assert [image["path"] for image in report["explained"]] == worst
    assert [image["loss"] for image in report["explained"]] == pytest.approx([losses[path] for path in worst], rel=1e-4)
    assert {"peak_predicted", "peak_true", "true", "predicted", "faithfulness_predicted"} <= report["explained"][0].keys()
    assert (reports / "worst_losses_explained.png").is_file()
    # The same choice as tlcli explain's, said the same way.
    method = report["explained"][0]["method"]
    assert any(note.startswith(f"--explain 2: method auto: {'Grad-CAM' if method == 'gradcam' else 'occlusion'}")
               for note in report["notes"])
    asked = json.loads(invoke("evaluate", tiny_run, colour_dataset, "--explain", 1, "--explain-method", "occlusion",
                              "--json", "--out", tmp_path / "occluded").stdout)
    assert asked["explained"][0]["method"] == "occlusion" and asked["explained"][0]["path"] == worst[0]
    assert 0 <= asked["explained"][0]["faithfulness_predicted"] <= 1

    # Without --explain (on one image, as quick as any): no stale picture of other predictions is left.
    one = tmp_path / "one" / "red"
    one.mkdir(parents=True)
    shutil.copy(colour_dataset / "test" / "red" / "red_0.png", one)
    invoke("evaluate", tiny_run, one.parent, "--out", reports, "--overwrite")
    assert not (reports / "worst_losses_explained.png").exists()
