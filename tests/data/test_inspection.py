"""`tlcli inspect`'s report: counts, sizes, modes, duplicates, imbalance and what training would
refuse, for a folder and for a pack."""

from __future__ import annotations

import json
import shutil

from helpers import invoke, write_class_folders, write_image
from tlcli.data.dataset import scan
from tlcli.data.inspection import inspect_dataset


def test_inspect_flags_duplicates_across_splits_and_classes(split_dataset):
    leaked = split_dataset / "train" / "cat" / "cat_0.png"
    shutil.copy(leaked, split_dataset / "test" / "cat" / "copy_of_train.png")
    shutil.copy(leaked, split_dataset / "train" / "dog" / "mislabelled.png")
    report = inspect_dataset(scan(split_dataset))
    kinds = {group["kind"] for group in report.duplicates}
    assert kinds == {"splits (leakage)"}  # one group of three: two splits and two classes
    assert len(report.duplicates[0]["paths"]) == 3
    assert not report.clean
    assert any("across splits (leakage)" in warning for warning in report.warnings)


def test_inspect_reports_counts_sizes_modes_and_imbalance(tmp_path):
    root = write_class_folders(tmp_path / "d", {"many": 12, "few": 3}, size=(20, 8))
    write_image(root / "few" / "grey.png", mode="L", size=(40, 30))
    report = inspect_dataset(scan(root))
    assert report.counts == {"all": {"few": 4, "many": 12}}
    assert report.sizes["width"] == {"min": 20, "median": 20, "max": 40}
    assert report.modes == {"RGB": 15, "L": 1}
    assert any("class imbalance" in w and "'many' has 12" in w for w in report.warnings)


def test_inspect_of_a_clean_dataset_is_clean(split_dataset):
    report = inspect_dataset(scan(split_dataset))
    assert report.clean and report.problems == [] and report.duplicates == []
    assert report.usable == report.files == 20


def test_inspect_reads_a_packed_dataset_and_its_left_out_files(messy_dataset, tmp_path):
    out = tmp_path / "messy-pack"
    invoke("pack", messy_dataset, "--out", out, "--quiet")
    folder = json.loads(invoke("inspect", messy_dataset, "--json").output)
    shards = json.loads(invoke("inspect", out, "--json").output)
    assert shards["counts"] == folder["counts"] and shards["classes"] == folder["classes"]
    assert shards["problems"] == folder["problems"] and shards["layout"] == "packed"
    assert shards["usable"] == folder["usable"]


def test_identical_files_in_one_split_are_grouped_as_conflicting_labels_or_plain_copies(split_dataset):
    cats = split_dataset / "train" / "cat"
    shutil.copy(cats / "cat_0.png", split_dataset / "train" / "dog" / "dog_or_cat.png")
    shutil.copy(cats / "cat_1.png", cats / "again.png")
    report = inspect_dataset(scan(split_dataset))
    assert [(group["kind"], [path.rsplit("/", 2)[-2:] for path in group["paths"]]) for group in report.duplicates] == [
        ("same split", [["cat", "again.png"], ["cat", "cat_1.png"]]),
        ("classes (conflicting labels)", [["cat", "cat_0.png"], ["dog", "dog_or_cat.png"]]),
    ]
    assert [warning.split(":")[0] for warning in report.warnings] == [
        "2 identical files across classes (conflicting labels)"]


def test_conversions_and_misnamed_files_are_noted(messy_dataset):
    report = inspect_dataset(scan(messy_dataset))
    converted = next(note for note in report.notes if note.startswith("converted to RGB when read: "))
    assert {part.split(" ")[1] for part in converted.split(": ")[1].split(", ")} == {"RGBA", "CMYK", "I;16", "P"}
    assert any(note.endswith("png_named.jpg: PNG data in a .jpg file") for note in report.notes)
    assert report.modes["RGB"] >= 8 and report.files == report.usable + 4


def test_a_dataset_training_would_refuse_is_reported_with_the_reason_first(tmp_path):
    root = write_class_folders(tmp_path / "data", {"only": 4})
    report = inspect_dataset(scan(root))
    first = report.warnings[0]
    assert first.startswith("cannot train on it as it is: ") and "at least 2 class folders" in first
    assert report.counts == {"all": {"only": 4}} and not report.clean
