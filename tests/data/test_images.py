"""Checking single image files: each file opened and decoded once, what it is or why it cannot be
used, with Pillow's decompression-bomb limits applied by tlcli, naming the file."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_image
from tlcli.data.dataset import load_dataset, scan
from tlcli.data.images import (
    Problem,
    check_image,
    check_images,
    decode_rgb,
    encoded_size,
    is_image_name,
    read_rgb,
)
from tlcli.data.inspection import inspect_dataset


def write_huge_png(path, width, height):
    """A PNG of many pixels in a small file (1-bit and blank, so quick to write)."""
    Image.new("1", (width, height)).save(path)
    return path


def test_huge_images_are_used_and_reported_and_a_decompression_bomb_is_a_problem(flat_dataset):
    huge = write_huge_png(flat_dataset / "cat" / "huge.png", 10000, 10000)
    write_huge_png(flat_dataset / "dog" / "bomb.png", 15000, 15000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = inspect_dataset(scan(flat_dataset))
        dataset = load_dataset(flat_dataset)
    assert not [warning for warning in caught if "DecompressionBomb" in warning.category.__name__]
    assert report.huge_images == {"count": 1, "over_megapixels": 89.5,
                                  "largest": {"path": str(huge), "width": 10000, "height": 10000}}
    assert [problem["path"].rsplit("/", 1)[1] for problem in report.problems] == ["bomb.png"]
    assert report.problems[0]["reason"] == (
        "too large to decode safely: 15000x15000 is 225 megapixels, above the 179-megapixel limit "
        "against decompression bombs; shrink it or remove it")
    used = {sample.path.name for samples in dataset.splits.values() for sample in samples}
    assert "huge.png" in used and "bomb.png" not in used


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_for_reports(tmp_path):
    path = write_image(tmp_path / "photo.jpg", size=(4000, 3000))
    assert read_rgb(str(path)).shape == (3000, 4000, 3)
    assert read_rgb(str(path), least_side=240).shape == (375, 500, 3)  # 1/8 scale, still >= 240


@pytest.mark.parametrize("name, mode, fmt, needs_pil, note", [
    ("rgb.png", "RGB", None, False, None),
    ("grey.JPEG", "L", None, False, None),
    ("palette.bmp", "P", "BMP", True, None),  # TensorFlow reads a palette BMP as grey levels
    ("rgb.bmp", "RGB", "BMP", False, None),
    ("cmyk.jpg", "CMYK", None, False, None),
    ("png_named.jpg", "RGB", "PNG", False, "PNG data in a .jpg file"),
    ("animated.gif", "P", None, False, None),
    ("photo.webp", "RGB", None, False, None),
])
def test_a_readable_image_says_what_it_is(tmp_path, name, mode, fmt, needs_pil, note):
    path = write_image(tmp_path / name, mode=mode, size=(12, 10), fmt=fmt)
    info = check_image(path)
    with Image.open(path) as image:
        assert (info.format, info.mode, info.width, info.height) == (image.format, image.mode, 12, 10)
    assert info.needs_pil is needs_pil and info.note == note
    assert info.digest == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest() and not info.huge


@pytest.mark.parametrize("name, content, reason", [
    ("notes.txt", b"text", "not an image file type (.txt); accepted: jpg, jpeg, png, bmp, gif, webp"),
    ("README", b"text", "not an image file type (no extension)"),
    ("empty.png", b"", "empty file (0 bytes)"),
    ("random.png", b"\x89PNG but not really" * 4, "not a readable image (unknown or corrupt data)"),
])
def test_a_file_that_cannot_be_used_says_why(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    result = check_image(path)
    assert isinstance(result, Problem) and result.path == path and result.reason.startswith(reason)


def test_formats_tensorflow_cannot_decode_and_unreadable_paths_are_problems(tmp_path):
    tiff = tmp_path / "scan.png"
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    assert check_image(tiff).reason == "TIFF images are not supported"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert check_image(folder).reason.startswith("cannot be read: ")
    full = write_image(tmp_path / "full.png", size=(64, 64))
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[:-200])
    assert check_image(tmp_path / "cut.png").reason.startswith("corrupt or truncated: ")


def test_many_files_are_checked_in_parallel_each_counted_once(tmp_path):
    paths = [write_image(tmp_path / f"{number}.png") for number in range(30)] + [tmp_path / "bad.txt"]
    paths[-1].write_text("x")
    counted = []
    results = check_images(paths, counted.append)
    assert list(results) == paths and counted == [1] * 31
    assert results == {path: check_image(path) for path in paths}


def test_only_accepted_extensions_name_images():
    assert [is_image_name(Path(name)) for name in ("a.JPG", "b.jpeg", "c.webp", "d.tif", "e.png.txt", "f")] == [
        True, True, True, False, False, False]


def test_encoded_bytes_decode_to_rgb_and_tell_their_size_from_the_header():
    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, "BMP")
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(decode_rgb(buffer.getvalue()), expected)
    assert encoded_size(buffer.getvalue()) == (12, 10)
