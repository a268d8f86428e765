"""Finding, checking and splitting a dataset's images (no TensorFlow)."""

from __future__ import annotations

import shutil

import pytest

from helpers import runner, write_class_folders
from tlcli.cli import app
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.errors import TlcliError


def test_bad_files_are_excluded_and_reported_with_reasons(messy_dataset):
    dataset = load_dataset(messy_dataset)
    reasons = {problem.path.name: problem.reason for problem in dataset.problems}
    assert set(reasons) == {"corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "0 bytes" in reasons["empty.png"]
    assert "not an image file type (.txt)" in reasons["notes.txt"]
    assert "not a readable image" in reasons["corrupt.jpg"]
    used = {sample.path.name for samples in dataset.splits.values() for sample in samples}
    assert not used & set(reasons)
    # Odd modes, a PNG named .jpg and upper-case extensions are all kept.
    assert {"grey.png", "rgba.png", "cmyk.jpg", "sixteen.png", "palette.bmp", "png_named.jpg",
            "upper.JPEG"} <= used


def test_hidden_files_and_folders_are_never_classes_or_images(messy_dataset):
    dataset = load_dataset(messy_dataset)
    assert dataset.class_names == ("cat", "dog")
    paths = [str(s.path) for samples in dataset.splits.values() for s in samples]
    assert not [p for p in paths if ".ipynb" in p or "__MACOSX" in p or ".hidden" in p or ".DS_Store" in p]
    assert len(dataset.split("train")) == 4 + 4 + 7


def test_strict_turns_bad_files_into_an_error(messy_dataset):
    with pytest.raises(TlcliError, match=r"4 file\(s\) cannot be used.*tlcli inspect"):
        load_dataset(messy_dataset, strict=True)


def test_flat_split_is_stratified_and_reproducible(tmp_path):
    root = write_class_folders(tmp_path / "d", {"a": 20, "b": 10, "c": 30})
    options = SplitOptions(val_split=0.2, test_split=0.1, seed=7)
    first = load_dataset(root, options)
    counts = first.counts()
    assert counts["val"] == {"a": 4, "b": 2, "c": 6}
    assert counts["test"] == {"a": 2, "b": 1, "c": 3}
    assert counts["train"] == {"a": 14, "b": 7, "c": 21}
    again = load_dataset(root, options)
    assert again.splits == first.splits
    other = load_dataset(root, SplitOptions(val_split=0.2, test_split=0.1, seed=8))
    assert other.splits["val"] != first.splits["val"]
    all_paths = [s.path for samples in first.splits.values() for s in samples]
    assert len(all_paths) == len(set(all_paths)) == 60


def test_split_layout_keeps_given_splits_and_sorted_classes(split_dataset):
    dataset = load_dataset(split_dataset)
    assert dataset.layout == "splits"
    assert list(dataset.splits) == ["train", "val", "test"]
    assert dataset.class_names == ("cat", "dog")
    assert dataset.counts()["val"] == {"cat": 2, "dog": 2}


def test_missing_val_folder_is_carved_from_train(split_dataset):
    shutil.rmtree(split_dataset / "val")
    dataset = load_dataset(split_dataset, SplitOptions(val_split=0.5))
    assert dataset.counts()["val"] == {"cat": 3, "dog": 3}
    assert dataset.counts()["train"] == {"cat": 3, "dog": 3}
    assert any("no val/ folder" in note for note in dataset.notes)


@pytest.mark.parametrize(
    "arrange, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "has no class folders"),
        (lambda root: write_class_folders(root, {"only": 5}), "needs at least 2 class folders"),
        (lambda root: write_class_folders(root, {"a": 5, "b": 1}), "Class 'b' .* has 1 usable image"),
        (
            lambda root: (write_class_folders(root / "train", {"a": 3, "b": 3}),
                          write_class_folders(root / "val", {"a": 1, "c": 1})),
            r"Class folders differ between train/ and val/ \(only in val/: c; missing from val/: b\)",
        ),
        (
            lambda root: (write_class_folders(root / "train", {"a": 3, "b": 3}),
                          (root / "val" / "a").mkdir(parents=True), (root / "val" / "b").mkdir()),
            "The val split .* has no usable images",
        ),
        (
            lambda root: (write_class_folders(root / "train", {"a": 3}), write_class_folders(root / "cats", {"x": 1})),
            "mixes split folders",
        ),
    ],
    ids=["missing", "empty", "one-class", "tiny-class", "classes-differ", "empty-split", "mixed-layout"],
)
def test_unusable_datasets_are_clear_errors(tmp_path, arrange, message):
    root = tmp_path / "data"
    arrange(root)
    with pytest.raises(TlcliError, match=message):
        load_dataset(root)


@pytest.mark.parametrize(
    "arrange, classes, notes",
    [
        (lambda root: write_class_folders(root, {"only": 5}), ("only",), ""),
        (lambda root: write_class_folders(root, {"a": 5, "b": 1}), ("a", "b"), "the train split has no image of b"),
        (lambda root: (write_class_folders(root / "train", {"a": 3, "b": 3}),
                       write_class_folders(root / "val", {"a": 1, "c": 1})), ("a", "b", "c"),
         "the train split has no image of c; the val split has no image of b"),
    ],
    ids=["one-class", "tiny-class", "classes-differ"],
)
def test_a_lenient_reading_keeps_what_training_refuses_with_a_note(tmp_path, arrange, classes, notes):
    """tlcli audit reads datasets that training refuses, to say what is wrong with them."""
    root = tmp_path / "data"
    arrange(root)
    dataset = load_dataset(root, lenient=True)
    assert dataset.class_names == classes
    assert sum(len(samples) for samples in dataset.splits.values()) == sum(1 for _ in root.rglob("*.png"))
    assert "; ".join(note for note in dataset.notes if "has no image" in note) == notes


def test_bad_split_fractions_are_rejected():
    with pytest.raises(TlcliError, match="--val-split 1.5 is out of range"):
        SplitOptions(val_split=1.5)
    with pytest.raises(TlcliError, match="leave no images for training"):
        SplitOptions(val_split=0.6, test_split=0.4)


def test_encoded_images_are_a_files_bytes_or_a_packs_record(packed, tmp_path):
    from tlcli.data.dataset import Sample, encoded_images

    from_pack = load_dataset(packed).split("val")
    gone = Sample(tmp_path / "gone.png", 0)
    samples = [from_pack[4], Sample(from_pack[1].path, 0), gone, from_pack[0]]
    assert encoded_images(samples) == [from_pack[4].path.read_bytes(), from_pack[1].path.read_bytes(), None,
                                       from_pack[0].path.read_bytes()]


def test_a_class_name_with_a_control_character_is_refused(colour_dataset, tmp_path):
    """A newline in a label cell once wrote three lines to labels.txt for two classes."""
    csv_path = tmp_path / "labels.csv"
    labels = ["ca\nt" if number % 2 else "dog" for number in range(6)]
    csv_path.write_text("path,label\n" + "".join(f'train/red/red_{number}.png,"{label}"\n'
                                                  for number, label in enumerate(labels)))
    result = runner.invoke(app, ["train", str(colour_dataset), "--model", "tinynet", "--labels", str(csv_path),
                                 "--out", str(tmp_path / "run")], terminal_width=400)
    assert result.exit_code != 0 and "The class name 'ca\\nt'" in result.output
    assert not (tmp_path / "run").exists()
    folders = tmp_path / "tabs"
    for name in ("a\tb", "c"):
        write_class_folders(folders, {name: 3})
    result = runner.invoke(app, ["inspect", str(folders), "--strict"], terminal_width=400)
    assert result.exit_code != 0 and "The class name 'a\\tb' (a class folder of" in result.output
