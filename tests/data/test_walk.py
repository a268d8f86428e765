"""Symbolic links in a dataset, as users make them: loops, repeats, and folders kept elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from helpers import runner, write_class_folders
from tlcli.cli import app
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.inference.predict import collect_image_files


def _inspect_json(root) -> dict:
    result = runner.invoke(app, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def wide_tables(monkeypatch):
    """Tables printed 400 columns wide, so that no cell wraps (Rich's own width, restored after)."""
    from tlcli.console import out

    monkeypatch.setattr(out, "_width", 400)


def _inspect_table(root) -> str:
    """inspect's tables, as printed (with `wide_tables`, unwrapped)."""
    result = runner.invoke(app, ["inspect", str(root)])
    assert result.exit_code == 0, result.output
    return result.stdout


def _has_row(table: str, *cells) -> bool:
    return re.search(r"\s+│\s+".join(re.escape(str(cell)) for cell in cells), table) is not None


def _links(report: dict) -> dict[str, str]:
    return {os.path.basename(link["path"]): link["status"] for link in report["links"]}


@pytest.fixture
def looped_dataset(flat_dataset):
    """`ln -s .. DATA/cat/loop`: without care, the whole dataset again inside class cat."""
    os.symlink("..", flat_dataset / "cat" / "loop")
    return flat_dataset


def test_a_link_to_the_parent_folder_is_reported_and_not_followed(looped_dataset, wide_tables):
    report = _inspect_json(looped_dataset)
    assert report["files"] == report["usable"] == 20
    assert report["counts"] == {"all": {"cat": 10, "dog": 10}}
    assert _links(report) == {"loop": "loop"}
    assert any("loop back to a folder" in warning for warning in report["warnings"])
    assert _has_row(_inspect_table(looped_dataset), looped_dataset / "cat" / "loop", looped_dataset,
                    "not followed: it loops back to a folder that contains it")

    dataset = load_dataset(looped_dataset, SplitOptions(val_split=0.2))
    paths = [sample.path for samples in dataset.splits.values() for sample in samples]
    assert len(paths) == len(set(paths)) == 20
    assert not [path for path in paths if "loop" in path.parts]


def test_train_sees_each_image_once_with_a_loop_inside_a_class(looped_dataset, tmp_path):
    result = runner.invoke(app, ["train", str(looped_dataset), "--model", "tinynet", "--weights", "none",
                                 "--image-size", "32", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "2 classes; images: train 16, val 4." in result.output


@pytest.mark.timeout(60)
def test_two_links_to_their_own_folder_are_reported_at_once(flat_dataset):
    """Two `ln -s . x` links used to make inspect walk 2**40 paths, its memory growing."""
    os.symlink(".", flat_dataset / "dog" / "l1")
    os.symlink(".", flat_dataset / "dog" / "l2")
    report = _inspect_json(flat_dataset)
    assert report["usable"] == 20 and _links(report) == {"l1": "loop", "l2": "loop"}


@pytest.mark.timeout(60)
def test_predict_lists_each_file_of_a_looping_folder_once(flat_dataset):
    os.symlink("..", flat_dataset / "cat" / "up")
    os.symlink(".", flat_dataset / "cat" / "here")
    files = collect_image_files([flat_dataset / "cat"])
    assert sorted(path.name for path in files) == sorted(f"cat_{index}.png" for index in range(10))


def test_a_linked_class_folder_elsewhere_works_and_inspect_names_it(flat_dataset, tmp_path, wide_tables):
    write_class_folders(tmp_path / "pool", {"bird": 3})
    os.symlink(tmp_path / "pool" / "bird", flat_dataset / "bird")
    os.symlink(tmp_path / "pool" / "bird" / "bird_0.png", flat_dataset / "dog" / "borrowed.png")
    report = _inspect_json(flat_dataset)
    assert report["counts"] == {"all": {"bird": 3, "cat": 10, "dog": 10}}
    assert _links(report) == {"bird": "outside", "borrowed.png": "repeat"}
    assert any("lead outside DATA; followed" in note for note in report["notes"])
    assert _has_row(_inspect_table(flat_dataset), flat_dataset / "bird", tmp_path / "pool" / "bird",
                    "followed: it leads outside DATA")


def test_a_file_or_folder_reached_twice_counts_once_where_it_lies(split_dataset):
    """A val/ class that links to train/'s folder would put every image in both splits."""
    shutil.rmtree(split_dataset / "val" / "cat")
    os.symlink("../train/cat", split_dataset / "val" / "cat")
    os.symlink("../cat/cat_0.png", split_dataset / "train" / "dog" / "also_a_dog.png")
    report = _inspect_json(split_dataset)
    assert report["counts"]["train"] == {"cat": 6, "dog": 6}
    assert report["counts"]["val"] == {"cat": 0, "dog": 2}
    assert _links(report) == {"cat": "repeat", "also_a_dog.png": "repeat"}
    repeat = next(link for link in report["links"] if link["path"].endswith("also_a_dog.png"))
    assert repeat["first"].endswith(os.path.join("train", "cat", "cat_0.png"))
    assert any("already counted" in warning for warning in report["warnings"])


def test_a_broken_link_is_reported_and_skipped(flat_dataset):
    os.symlink(flat_dataset / "nowhere.png", flat_dataset / "cat" / "gone.png")
    report = _inspect_json(flat_dataset)
    assert report["files"] == report["usable"] == 20 and _links(report) == {"gone.png": "broken"}
    assert any(warning.startswith("1 symbolic link(s) lead nowhere; skipped") for warning in report["warnings"])
