"""`tlcli pack`: shards that every command reads as DATA, giving the run the folder gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import DATA_READERS, invoke, run_facts, write_colour_dataset
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.data.packed import INDEX, SAMPLES

SPLIT = ("--val-split", 0.25, "--test-split", 0.125, "--seed", 3)
TINY = ("--model", "vgg16", "--weights", "none", "--image-size", 32, "--quiet")


@pytest.fixture(scope="module")
def flat_colours(tmp_path_factory) -> Path:
    """Three colour classes of 16 images each, in a flat layout (the split is made by tlcli)."""
    source = write_colour_dataset(tmp_path_factory.mktemp("colours") / "split", {"train": 16})
    flat = source.parent / "flat"
    shutil.copytree(source / "train", flat)
    return flat


@pytest.fixture(scope="module")
def packed(flat_colours, tmp_path_factory) -> Path:
    """flat_colours packed with the split below, in shards small enough to hold a few images each."""
    out = tmp_path_factory.mktemp("packs") / "colours"
    invoke("pack", flat_colours, "--out", out, "--shard-mb", 0.004, "--quiet", *SPLIT)
    return out


ROUTES = {
    "solved head (features streamed from the shards)": (),
    "end to end, shuffled and augmented (epochs from the byte column)": (
        "--no-cache-features", "--head-solver", "gradient", "--epochs", 2, "--batch-size", 8, "--flip", "horizontal"),
}


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_a_run_from_the_shards_is_the_run_from_the_folder(flat_colours, packed, tmp_path, route):
    invoke("train", flat_colours, *TINY, *SPLIT, *ROUTES[route], "--out", tmp_path / "folder")
    invoke("train", packed, *TINY, "--seed", 3, *ROUTES[route], "--out", tmp_path / "shards")  # the same seed
    assert run_facts(tmp_path / "shards") == run_facts(tmp_path / "folder")


def test_the_shards_hold_the_folders_split_in_its_order(flat_colours, packed):
    folder = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3))
    shards = load_dataset(packed)
    assert shards.class_names == folder.class_names
    for split in ("train", "val", "test"):
        assert [(s.path, s.label) for s in shards.split(split)] == [(s.path, s.label) for s in folder.split(split)]
    index = json.loads((packed / INDEX).read_text())
    assert len([shard for shard in index["shards"] if shard["split"] == "train"]) > 1
    assert index["source"]["split"] == {"val_split": 0.25, "test_split": 0.125, "seed": 3}
    assert index["image_sizes"]["width"] == {"min": 20, "median": 20, "max": 20}


def test_the_pipeline_reads_the_same_images_from_shards_as_from_files(flat_colours, packed):
    from tlcli.data.pipeline import image_dataset

    folder, shards = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3)), load_dataset(packed)
    for kwargs in ({}, {"shuffle": True, "seed": 5}):  # streamed, then from the byte column
        read = [[batch for batch in image_dataset(dataset.split("train"), 16, 5, with_index=True, **kwargs)]
                for dataset in (folder, shards)]
        for from_files, from_shards in zip(*read, strict=True):
            for left, right in zip(from_files, from_shards, strict=True):
                assert (left.numpy() == right.numpy()).all()


def test_inspect_reads_a_packed_dataset_and_its_left_out_files(messy_dataset, tmp_path):
    out = tmp_path / "messy-pack"
    invoke("pack", messy_dataset, "--out", out, "--quiet")
    folder = json.loads(invoke("inspect", messy_dataset, "--json").output)
    shards = json.loads(invoke("inspect", out, "--json").output)
    assert shards["counts"] == folder["counts"] and shards["classes"] == folder["classes"]
    assert shards["problems"] == folder["problems"] and shards["layout"] == "packed"
    assert shards["usable"] == folder["usable"]


def _truncate(pack: Path):
    shard = sorted(pack.glob("train-*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])


def _drop_shard(pack: Path):
    sorted(pack.glob("val-*.tfrecord"))[-1].unlink()


def _miscount(pack: Path):
    index = json.loads((pack / INDEX).read_text())
    index["records"]["train"] += 1
    (pack / INDEX).write_text(json.dumps(index))


def _swap_samples(pack: Path):
    rows = json.loads((pack / SAMPLES).read_text())
    rows["train"].reverse()
    (pack / SAMPLES).write_text(json.dumps(rows))


def _swap_shards(pack: Path):
    """Two shards of the same size exchanged: only their sha256 tells (inspect reads every byte)."""
    index = json.loads((pack / INDEX).read_text())
    by_size = {}
    for shard in index["shards"]:
        by_size.setdefault(shard["bytes"], []).append(pack / shard["file"])
    first, second = next(paths for paths in by_size.values() if len(paths) > 1)[:2]
    content = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(content)


DAMAGES = {
    "a truncated shard": (_truncate, ("train", "inspect")),
    "a missing shard": (_drop_shard, ("train", "inspect")),
    "an index that counts other records": (_miscount, ("train", "inspect")),
    "a samples file that is not the packed one": (_swap_samples, ("train", "inspect")),
    "two shards exchanged": (_swap_shards, ("inspect",)),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_pack_is_one_line_and_nothing_is_written(packed, tmp_path, damage):
    pack = Path(shutil.copytree(packed, tmp_path / "pack"))
    damaged, commands = DAMAGES[damage]
    damaged(pack)
    before = sorted(path.name for path in tmp_path.iterdir())
    for command in commands:
        arguments = ("train", pack, *TINY, "--out", tmp_path / "run") if command == "train" else ("inspect", pack)
        result = invoke(*arguments, expect=2)
        message = " ".join(result.output.split())
        assert f"{pack / INDEX} does not match its shards" in message and "tlcli pack" in message
        assert result.output.strip().count("Error") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_pack_never_writes_into_a_users_folder_and_replaces_its_own_with_overwrite(flat_colours, packed, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = invoke("pack", flat_colours, "--out", mine, "--quiet", expect=2)
    assert "holds files tlcli did not write" in " ".join(result.output.split())
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]

    again = Path(shutil.copytree(packed, tmp_path / "again"))
    result = invoke("pack", flat_colours, "--out", again, "--quiet", expect=2)
    assert "--overwrite" in result.output
    invoke("pack", flat_colours, "--out", again, "--quiet", "--overwrite", "--seed", 9)
    assert json.loads((again / INDEX).read_text())["source"]["split"]["seed"] == 9
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".again")]


def test_pack_refuses_an_out_inside_the_dataset_and_a_pack_as_source(flat_colours, packed, tmp_path):
    result = invoke("pack", flat_colours, "--out", flat_colours / "shards", "--quiet", expect=2)
    assert "lies inside the dataset" in " ".join(result.output.split())
    assert not (flat_colours / "shards").exists()
    result = invoke("pack", packed, "--out", tmp_path / "twice", "--quiet", expect=2)
    assert "is a packed dataset already" in " ".join(result.output.split())


@pytest.mark.slow
@pytest.mark.parametrize("command", DATA_READERS)
def test_every_command_reads_a_packed_dataset_as_its_folder(command, colour_dataset, packed_colours, tiny_run,
                                                             tmp_path):
    arguments, same = DATA_READERS[command]
    invoke(*arguments(tiny_run, colour_dataset, tmp_path / "folder"))
    invoke(*arguments(tiny_run, packed_colours, tmp_path / "shards"))
    same(tmp_path / "folder", tmp_path / "shards")


@pytest.mark.slow
def test_a_pack_stands_alone_without_the_folder_it_was_packed_from(tmp_path):
    source = write_colour_dataset(tmp_path / "colours", {"train": 6, "val": 3, "test": 3})
    invoke("pack", source, "--out", tmp_path / "pack", "--quiet")
    invoke("train", tmp_path / "pack", *TINY, "--out", tmp_path / "run")
    invoke("evaluate", tmp_path / "run", tmp_path / "pack", "--explain", 2, "--out", tmp_path / "with-source")
    shutil.rmtree(source)
    invoke("evaluate", tmp_path / "run", tmp_path / "pack", "--explain", 2, "--out", tmp_path / "reports")
    assert json.loads((tmp_path / "reports" / "evaluation.json").read_text())["data_description"].startswith(
        "the test split of the packed dataset")
    # The pictures of the worst images are drawn from the shards: the ones the source's files gave.
    for picture in ("worst_losses.png", "worst_losses_explained.png"):
        assert (tmp_path / "reports" / picture).read_bytes() == (tmp_path / "with-source" / picture).read_bytes()
    exported = invoke("export", tmp_path / "run", "--out", tmp_path / "export")  # verified on the pack's images
    assert "ok" in exported.output and "failed" not in exported.output


def test_workers_read_disjoint_shard_files_that_together_hold_the_split(packed):
    from tlcli.data.packed import record_dataset

    split = load_dataset(packed).split("train")[0].record[0]
    assert len(split.files) >= 2
    read = [[int(index) for _, index in record_dataset(split, (2, worker)).as_numpy_iterator()] for worker in (0, 1)]
    assert read[0] and read[1] and not set(read[0]) & set(read[1])
    assert sorted(read[0] + read[1]) == list(range(split.count))
    # Worker 0 reads every second file, in the split's order: the records dealt to those files.
    assert read[0] == [index for index in range(split.count) if index % len(split.files) % 2 == 0]
