"""Label files: images and labels listed in a CSV instead of class folders."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, invoke, runner, write_colour_dataset
from tlcli.cli import app
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.data.labels import LabelFile, read_listing


def write_label_file(path: Path, rows, header=("path", "label", "split")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rows_of(root: Path, with_split: bool = True) -> list[tuple]:
    """One row per image of a class-folder dataset, as its label file would list it."""
    rows = []
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root)
        split, label = (relative.parts[0], relative.parts[1]) if with_split else (None, relative.parts[0])
        rows.append((str(relative), label, split) if with_split else (str(relative), label))
    return rows


@pytest.fixture(scope="module")
def listed(colour_dataset, tmp_path_factory) -> Path:
    return write_label_file(tmp_path_factory.mktemp("listed") / "labels.csv", rows_of(colour_dataset))


@pytest.fixture(scope="module")
def listed_run(colour_dataset, listed) -> Path:
    """The colour dataset trained from its label file, with `solved_run`'s options; tests only read it."""
    run = listed.parent / "run"
    invoke("train", colour_dataset, "--labels", listed, *TINY_TRAIN, "--out", run)
    return run


def test_a_label_file_gives_the_run_its_folders_would_give(listed, listed_run, solved_run):
    """`solved_run` is the run the folders give (the same data and options)."""
    folders, listed_config = (json.loads((run / "config.json").read_text()) for run in (solved_run, listed_run))
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (solved_run, listed_run)]

    assert listed_config["counts"] == folders["counts"] and listed_config["class_names"] == folders["class_names"]
    assert metrics[0]["weights_sha256"] == metrics[1]["weights_sha256"]
    assert listed_config["labels"] == str(listed.resolve()) and len(listed_config["labels_sha256"]) == 64


def test_without_a_split_column_the_split_is_the_folders_seeded_split(tmp_path):
    flat, source = tmp_path / "flat", write_colour_dataset(tmp_path / "colours", {"train": 10})
    shutil.copytree(source / "train" / "red", flat / "cat")
    shutil.copytree(source / "train" / "blue", flat / "dog")
    listing = write_label_file(tmp_path / "flat.csv", rows_of(flat, with_split=False), header=("filename", "label"))
    options = SplitOptions(val_split=0.3, seed=4)
    by_folders = load_dataset(flat, options)
    by_file = load_dataset(flat, options, labels=LabelFile(listing))
    assert {split: [s.path for s in samples] for split, samples in by_file.splits.items()} == {
        split: [s.path for s in samples] for split, samples in by_folders.splits.items()}


def test_inspect_reports_what_the_file_gets_wrong(colour_dataset, tmp_path):
    rows = rows_of(colour_dataset)
    messy = [
        *rows[:-2],  # the image before the last is left out: unlisted
        ("train/red/nowhere.png", "red", "train"),  # missing
        (rows[0][0], "red", "train"),  # listed twice
        ("train/red/red_9.png", "", "train"),  # an empty label
        (rows[-1][0].removesuffix(".png"), "lonely", "test"),  # no extension, and a label with one image
    ]
    listing = write_label_file(tmp_path / "messy.csv", messy)
    report = json.loads(invoke("inspect", colour_dataset, "--labels", listing, "--json", expect=0).stdout)

    reasons = {problem["reason"] for problem in report["problems"]}
    assert any("names a file that does not exist" in reason and "row" in reason for reason in reasons)
    assert any("lists it again (first at row 2)" in reason for reason in reasons)
    assert any("has an empty label" in reason for reason in reasons)
    assert any("not listed in messy.csv" in warning for warning in report["warnings"])
    assert any("label(s) with a single image: lonely" in warning for warning in report["warnings"])
    assert report["labels"] == str(listing) and not report["clean"]


@pytest.mark.parametrize("contents, message", [
    (b"file,name\na.png,red\n", "has no path or filename column (its columns: file, name). Name it with --label-columns"),
    (b"path,label\n\xff\xfe bad,red\n", "is not UTF-8 text"),
    (b"path,label\n../outside.png,red\n", "row 2: path '../outside.png' leaves the dataset folder"),
    (b"path,label\n/etc/passwd,red\n", "row 2: path '/etc/passwd' leaves the dataset folder"),
    (b"path,label\ntrain/red/red_0.png, red\n", "row 2: label ' red' has spaces around it. Write it as 'red'."),
    (b"path,label\ntrain/red/red_0.png,red\ntrain/red/red_1.png,Red\n",
     "row 3: label 'Red' differs only in case from 'red' (row 2)"),
    (b"path,label,split\ntrain/red/red_0.png,red,training\n", "row 2: split 'training' is not train, val or test"),
])
def test_a_bad_label_file_is_one_line_and_nothing_is_written(colour_dataset, tmp_path, contents, message):
    listing = tmp_path / "bad.csv"
    listing.write_bytes(contents)
    result = runner.invoke(app, ["train", str(colour_dataset), "--labels", str(listing), *map(str, TINY_TRAIN),
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_outside_paths_are_read_when_allowed_and_columns_can_be_named(colour_dataset, tmp_path):
    rows = [(str(colour_dataset / path), label) for path, label, _ in rows_of(colour_dataset)]
    listing = write_label_file(tmp_path / "abs.csv", rows, header=("image_id", "class"))
    dataset = load_dataset(tmp_path, SplitOptions(), labels=LabelFile.parse(
        listing, "path=image_id,label=class", allow_outside=True))
    assert dataset.class_names == ("blue", "green", "red") and sum(map(len, dataset.splits.values())) == 48


def test_finetune_and_evaluate_find_a_listed_run_s_data_again(colour_dataset, listed, listed_run, tmp_path):
    report = invoke("evaluate", listed_run, colour_dataset, "--json", "--out", tmp_path / "reports")
    assert "on the test rows of labels.csv" in report.stderr and json.loads(report.stdout)["samples"] == 12
    invoke("finetune", listed_run, "--stage", "block3:1:1e-5", "--batch-size", 8, "--quiet",
           "--out", tmp_path / "tuned")
    tuned = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert tuned["labels"] == str(listed.resolve()) and tuned["counts"]["train"] == {"blue": 8, "green": 8, "red": 8}


@pytest.mark.parametrize("rows", [
    pytest.param("", id="header only"),
    pytest.param("train/red/red_0.png,\ntrain/red/red_1.png,\n", id="every label empty"),
    pytest.param("nope/a.png,red\nnope/b.png,green\n", id="every file missing"),
])
@pytest.mark.parametrize("command", ["train", "pack", "inspect"])
def test_a_label_file_with_no_usable_row_is_one_line(colour_dataset, tmp_path, command, rows):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\n" + rows)
    arguments = {"train": ["train", colour_dataset, "--model", "tinynet", "--out", tmp_path / "run"],
                 "pack": ["pack", colour_dataset, "--out", tmp_path / "pack"],
                 "inspect": ["inspect", colour_dataset, "--strict"]}[command]
    result = runner.invoke(app, [*map(str, arguments), "--labels", str(csv_path)], terminal_width=400)
    assert result.exit_code != 0 and not isinstance(result.exception, StopIteration)
    if command == "inspect":  # the reason among the report's tables (Rich folds its long paths)
        assert "names no usable image of" in " ".join(result.output.split())
    else:
        assert f"--labels {csv_path} names no usable image of {colour_dataset}" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "pack").exists()


def test_words_that_say_what_is_wrong(colour_dataset, tmp_path):
    """--labels naming a folder is not "missing"; a path inside DATA written absolute or through
    .. does not "leave the dataset"; pack given a pack says so."""
    result = runner.invoke(app, ["inspect", str(colour_dataset), "--labels", str(tmp_path)], terminal_width=400)
    assert f"--labels {tmp_path} is a folder. Give the CSV file" in result.output
    image = colour_dataset / "train" / "red" / "red_0.png"
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"path,label\n{image},red\ntrain/red/../red/red_1.png,red\n"
                        "train/green/green_0.png,green\ntrain/green/green_1.png,green\n")
    listing = read_listing(colour_dataset, LabelFile(csv_path))
    named = {path.name for labels in listing.files.values() for files in labels.values() for path in files}
    assert {"red_0.png", "red_1.png"} <= named and not listing.problems
    invoke("pack", colour_dataset, "--out", tmp_path / "pack", "--quiet")
    result = runner.invoke(app, ["pack", str(tmp_path / "pack"), "--out", str(tmp_path / "again")], terminal_width=400)
    assert result.output.strip() == f"Error: {tmp_path / 'pack'} is a packed dataset already. Pass the folder of images it was packed from."


def test_a_run_whose_label_file_is_gone_still_exports_and_is_verified_on_the_dataset_s_images(colour_dataset, tmp_path):
    (tmp_path / "lists").mkdir()
    listing = write_label_file(tmp_path / "lists" / "labels.csv", rows_of(colour_dataset))
    invoke("train", colour_dataset, "--labels", listing, *TINY_TRAIN, "--out", tmp_path / "run")
    listing.unlink()
    invoke("export", tmp_path / "run", "--format", "keras", "--out", tmp_path / "export", "--json")
    checks = json.loads((tmp_path / "export" / "metadata.json").read_text())["verification"]
    assert checks and all(check["passed"] for check in checks)


@pytest.mark.parametrize("command", ["train", "inspect"])
def test_labels_that_differ_between_splits_are_called_labels_not_class_folders(colour_dataset, tmp_path, command):
    rows = [row for row in rows_of(colour_dataset) if not (row[2] == "val" and row[1] == "green")]
    listing = write_label_file(tmp_path / "labels.csv", rows)
    arguments = {"train": ["train", colour_dataset, *TINY_TRAIN, "--out", tmp_path / "run"],
                 "inspect": ["inspect", colour_dataset, "--strict"]}[command]
    result = runner.invoke(app, [*map(str, arguments), "--labels", str(listing)], terminal_width=400)
    assert result.exit_code != 0
    assert "val rows differ (only in val: -; missing from val: green). Every split needs the same labels." in " ".join(
        result.output.split())
    assert "folder" not in result.output.replace(str(tmp_path), "")
