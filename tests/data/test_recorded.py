"""The dataset a run was trained on, read again and split as the run was (no TensorFlow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.data.recorded import run_dataset
from tlcli.errors import TlcliError
from tlcli.runs.directory import RunInfo

CLASSES = ("blue", "green", "red")


def _run(config: dict, folder: Path) -> RunInfo:
    """A run as read from a config.json recording `config` (the dataset keys are what is read)."""
    return RunInfo(folder, folder / "model.keras", CLASSES, 32, "tinynet", config)


def _names(samples) -> set[str]:
    return {sample.path.name for sample in samples}


def test_the_recorded_dataset_is_split_as_the_run_was(flat_colours, tmp_path):
    run = _run({"data": str(flat_colours), "val_split": 0.25, "test_split": 0.125, "seed": 3}, tmp_path)
    dataset, options = run_dataset(run, None, strict=False)
    trained = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3))  # the split `tlcli train` made
    assert options == SplitOptions(0.25, 0.125, 3)
    assert {split: _names(samples) for split, samples in dataset.splits.items()} == \
           {split: _names(samples) for split, samples in trained.splits.items()}
    reseeded, _ = run_dataset(_run({**run.config, "seed": 4}, tmp_path), None, strict=False)
    assert _names(reseeded.split("val")) != _names(dataset.split("val"))


def test_a_dataset_given_for_a_moved_one_is_read_with_the_recorded_split(flat_colours, tmp_path):
    moved = shutil.copytree(flat_colours, tmp_path / "moved")
    run = _run({"data": str(tmp_path / "gone"), "val_split": 0.25, "seed": 3}, tmp_path)
    dataset, _ = run_dataset(run, moved, strict=False)
    assert dataset.root == moved and len(dataset.split("val")) == 12  # a quarter of 48


def test_a_dataset_of_other_classes_is_refused(flat_colours, tmp_path):
    other = shutil.copytree(flat_colours, tmp_path / "other", ignore=shutil.ignore_patterns("blue*"))
    with pytest.raises(TlcliError, match=r"The classes in .*other \(green, red\) differ from the run's "
                                         r"\(blue, green, red\)"):
        run_dataset(_run({"data": str(other)}, tmp_path), None, strict=False)


def test_a_run_that_does_not_record_its_dataset_asks_for_data(tmp_path):
    with pytest.raises(TlcliError, match="does not record its dataset. Pass it with --data DATA."):
        run_dataset(_run({}, tmp_path), None, strict=False)
