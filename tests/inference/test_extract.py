"""`tlcli extract`: one .npz of features, labels, splits and paths, loadable without pickle."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_backbone
from helpers import read_features, runner, write_colour_dataset
from tlcli.cli import app

TINY = ("--model", "tinynet", "--weights", "none", "--image-size", "32", "--batch-size", "8")
FEATURE_SIZE = tiny_backbone.TINY.feature_size  # 32: the last block's filters, pooled
FILE_ARRAYS = {"features", "labels", "class_names", "splits", "paths", "backbone", "weights", "image_size",
               "pooling", "preprocessing", "distribution"}


def _extract(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


@pytest.fixture(scope="module")
def colour_features(colour_dataset, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("features") / "colours.npz"
    result = _extract(colour_dataset, *TINY, "--out", out)
    return out, result


def test_the_feature_file_round_trips_without_pickle(colour_dataset, colour_features):
    out, result = colour_features
    assert result.exit_code == 0, result.output
    saved = read_features(out)
    assert set(saved) == FILE_ARRAYS
    assert saved["features"].shape == (48, FEATURE_SIZE) and saved["features"].dtype == np.float32
    assert np.isfinite(saved["features"]).all() and saved["features"].std() > 0
    assert list(saved["class_names"]) == ["blue", "green", "red"]
    assert saved["labels"].dtype == np.int64
    assert list(saved["splits"]) == ["train"] * 24 + ["val"] * 12 + ["test"] * 12
    for path, label, split in zip(saved["paths"], saved["labels"], saved["splits"]):
        path = Path(path)
        assert path.is_file() and path.parent.name == saved["class_names"][label] and path.parent.parent.name == split
    assert len(set(saved["paths"])) == 48
    assert (saved["backbone"].item(), saved["weights"].item(), saved["pooling"].item()) == ("tinynet", "none", "avg")
    assert saved["image_size"].item() == 32 and saved["preprocessing"].item() == "tf"
    assert f"48 x {FEATURE_SIZE} features" in result.stdout and "images/s" in result.stdout
    assert "first batch" in result.stdout and list(out.parent.iterdir()) == [out]


def test_features_equal_the_backbone_output_on_the_same_pixels(tmp_path):
    """The backbone built here by hand from a weights file, its pixels preprocessed by hand ("tf":
    [0, 255] to [-1, 1]) and max-pooled by hand. Each real backbone's own preprocessing is
    tests/models/test_backbones.py's."""
    import keras

    data = write_colour_dataset(tmp_path / "data", per_split={"train": 2, "val": 1}, size=(32, 32))
    keras.utils.set_random_seed(1)
    base = tiny_backbone.TinyNet(input_shape=(32, 32, 3))
    weights_file = tmp_path / "tinynet.weights.h5"
    base.save_weights(weights_file)
    out = tmp_path / "features.npz"
    result = _extract(data, "--model", "tinynet", "--weights", weights_file, "--image-size", 32,
                      "--pooling", "max", "--out", out)
    assert result.exit_code == 0, result.output
    saved = read_features(out)
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in saved["paths"]])
    feature_map = base(pixels / 127.5 - 1.0, training=False)
    expected = np.max(np.asarray(feature_map), axis=(1, 2))
    assert expected.std() > 0
    np.testing.assert_allclose(saved["features"], expected, rtol=1e-5, atol=1e-5)
    assert saved["weights"].item() == str(weights_file.resolve()) and saved["pooling"].item() == "max"


def test_unreadable_files_are_reported_and_the_rest_written(messy_dataset, tmp_path):
    out = tmp_path / "messy.npz"
    result = _extract(messy_dataset, *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"):
        assert name in result.stderr
    saved = read_features(out)
    names = {Path(path).name for path in saved["paths"]}
    assert not names & {"corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"}
    assert {"grey.png", "cmyk.jpg", "palette.bmp", "sixteen.png", "upper.JPEG"} <= names
    assert saved["features"].shape == (len(saved["paths"]), FEATURE_SIZE) and len(saved["paths"]) == 19
    assert re.search(r"skipped files\W+4\W", result.stdout), result.stdout


def test_a_file_that_breaks_after_checking_is_skipped_alone(tmp_path):
    from tlcli.inference.extract import ExtractConfig, extract, plan_extraction

    data = write_colour_dataset(tmp_path / "data", per_split={"train": 3, "val": 2})
    plan = plan_extraction(ExtractConfig(data=data, model="tinynet", out=tmp_path / "f.npz", weights="none",
                                         image_size=32, batch_size=4))
    broken = plan.samples[5].path
    broken.write_bytes(b"garbage now")
    result = extract(plan)
    assert [problem.path for problem in result.skipped] == [broken] and result.images == 14
    saved = read_features(tmp_path / "f.npz")
    assert str(broken) not in saved["paths"] and len(saved["paths"]) == len(saved["labels"]) == 14
    assert list(saved["splits"]).count("val") == 6


def test_an_existing_file_is_kept_unless_overwrite(colour_dataset, colour_features, tmp_path):
    out = tmp_path / "existing.npz"
    shutil.copy(colour_features[0], out)  # an earlier extract's file: tlcli's, signed
    earlier = out.read_bytes()
    refused = _extract(colour_dataset, *TINY, "--out", out)
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--overwrite" in refused.stderr
    assert out.read_bytes() == earlier
    replaced = _extract(colour_dataset, *TINY, "--pooling", "max", "--out", out, "--overwrite", "--quiet")
    assert replaced.exit_code == 0, replaced.output
    assert read_features(out)["pooling"].item() == "max" and sorted(tmp_path.iterdir()) == [out]
    precious = tmp_path / "precious.npz"
    precious.write_bytes(b"precious")  # a user's file of that name is never replaced, even with --overwrite
    refused = _extract(colour_dataset, *TINY, "--out", precious, "--overwrite")
    assert refused.exit_code == 2 and "tlcli did not write it" in refused.stderr
    assert precious.read_bytes() == b"precious"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--out", "{tmp}/features.csv"), "so the name must end in .npz"),
        (("--out", "{tmp}"), "is a folder"),
        (("--out", "{tmp}/f.npz", "--pooling", "flatten"), "--pooling 'flatten' is not one of avg|max"),
        (("--out", "{tmp}/f.npz", "--model", "alexnet"), "Unknown model 'alexnet'"),
        (("--out", "{tmp}/f.npz", "--model", "inceptionv3", "--image-size", "32"), "too small for inceptionv3"),
        (("--out", "{tmp}/f.npz", "--model", "vgg16", "--image-size", "10000"), "too large for vgg16 (maximum 1024)"),
        (("--out", "{tmp}/f.npz", "--weights", "{tmp}/missing.h5"), "no such file or folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(colour_dataset, tmp_path, arguments, message):
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    result = _extract(colour_dataset, "--weights", "none", "--image-size", "32", *arguments)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("Error:") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_with_no_decodable_image_writes_nothing(tmp_path):
    from tlcli.errors import TlcliError
    from tlcli.inference.extract import ExtractConfig, extract, plan_extraction

    data = write_colour_dataset(tmp_path / "data", per_split={"train": 2})
    plan = plan_extraction(ExtractConfig(data=data, model="tinynet", out=tmp_path / "out" / "f.npz",
                                         weights="none", image_size=32, val_split=0.0))
    for sample in plan.samples:
        sample.path.write_bytes(b"garbage now")
    with pytest.raises(TlcliError, match="None of the 6 image"):
        extract(plan)
    assert list((tmp_path / "out").iterdir()) == []
