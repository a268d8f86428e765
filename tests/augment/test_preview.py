"""`tlcli augment`'s preview grid: each row an original image beside its augmented variants."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import runner, write_image
from tlcli.cli import app


def test_preview_grid_has_the_requested_cells_and_unchanged_originals(colour_dataset, tmp_path):
    from tlcli.augment.preview import cell_origin

    out = tmp_path / "preview.png"
    result = runner.invoke(app, ["augment", str(colour_dataset), "--out", str(out), "--samples", "4",
                                 "--variants", "3", "--image-size", "20", "--augment", "heavy"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape[:2] == tuple(reversed(cell_origin(4, 4, 20)))  # 4 rows, original + 3
    # Rows go through the classes in turn; the originals are the training images, untouched
    # (20x20 PNGs at --image-size 20 decode exactly).
    train = {path.name: np.asarray(Image.open(path).convert("RGB"))
             for path in (colour_dataset / "train").rglob("*.png")}
    for row, class_name in enumerate(["blue", "green", "red", "blue"]):
        x, y = cell_origin(row, 0, 20)
        original = grid[y:y + 20, x:x + 20]
        matches = [name for name, pixels in train.items() if np.array_equal(pixels, original)]
        assert len(matches) == 1 and matches[0].startswith(class_name)
        for column in (1, 2, 3):
            x, y = cell_origin(row, column, 20)
            assert not np.array_equal(grid[y:y + 20, x:x + 20], original)


def test_preview_is_reproducible_and_accepts_a_single_image(tmp_path):
    image = write_image(tmp_path / "photo.png", size=(24, 24))
    outputs = []
    for name in ("a.png", "b.png"):
        result = runner.invoke(app, ["augment", str(image), "--out", str(tmp_path / name), "--variants", "2",
                                     "--image-size", "24", "--seed", "3"])
        assert result.exit_code == 0, result.output
        outputs.append(np.asarray(Image.open(tmp_path / name)))
    np.testing.assert_array_equal(*outputs)
    from tlcli.augment.preview import cell_origin

    assert outputs[0].shape[:2] == tuple(reversed(cell_origin(1, 3, 24)))  # one row, 1 + 2 columns


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["--augment", "extreme"], "--augment 'extreme' is not a preset"),
        (["--rotation", "-0.2"], "--rotation -0.2 is out of range"),
        (["--samples", "0"], "--samples 0 is too small"),
        (["--image-size", "5000"], "--image-size 5000 is too large for a preview (maximum 1024"),
        (["--out", "{tmp}/preview.jpg"], "so the name must end in .png"),
        (["--config", "{tmp}/missing.toml"], "missing.toml does not exist"),
    ],
)
def test_bad_preview_options_exit_with_one_line_and_write_nothing(colour_dataset, tmp_path, arguments, words):
    command = ["augment", str(colour_dataset), "--out", str(tmp_path / "preview.png")]
    result = runner.invoke(app, command + [value.format(tmp=tmp_path) for value in arguments])
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and words in result.output.replace("\n", " ")
    assert list(tmp_path.iterdir()) == []


def test_without_augmentation_every_variant_is_the_original(tmp_path):
    from tlcli.augment.preview import cell_origin

    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = runner.invoke(app, ["augment", str(image), "--out", str(tmp_path / "grid.png"), "--variants", "2",
                                 "--image-size", "16", "--augment", "none"])
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    cells = [grid[y:y + 16, x:x + 16] for x, y in (cell_origin(0, column, 16) for column in range(3))]
    np.testing.assert_array_equal(cells[0], np.asarray(Image.open(image).convert("RGB")))
    assert all(np.array_equal(cell, cells[0]) for cell in cells[1:])


@pytest.mark.parametrize("source, out, words", [
    ("notes.txt", "preview.png", "notes.txt cannot be used: not an image file type (.txt)"),
    ("photo.png", "folder.png", "folder.png is a folder, where a file is needed"),
])
def test_a_source_that_is_no_image_or_an_out_that_is_a_folder_is_one_line(tmp_path, source, out, words):
    write_image(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("labels are hard")
    (tmp_path / "folder.png").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["augment", str(tmp_path / source), "--out", str(tmp_path / out)],
                           terminal_width=400)
    assert result.exit_code == 2 and words in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before
