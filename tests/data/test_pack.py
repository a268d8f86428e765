"""`tlcli pack`: shards that every command reads as DATA, giving the run the folder gives. Reading a
pack (and refusing a damaged one) is tests/data/test_packed.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import (
    DATA_READERS,
    TINY_TRAIN,
    invoke,
    run_facts,
    runner,
    write_colour_dataset,
    write_multi_label_dataset,
)
from tlcli.cli import app
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.data.packed import INDEX

SPLIT = ("--val-split", 0.25, "--test-split", 0.125, "--seed", 3)  # the split the `packed` fixture was made with


ROUTES = {
    "solved head (features streamed from the shards)": (),
    "end to end, shuffled and augmented (epochs from the byte column)": (
        "--no-cache-features", "--head-solver", "gradient", "--epochs", 2, "--batch-size", 8, "--flip", "horizontal"),
}


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_a_run_from_the_shards_is_the_run_from_the_folder(flat_colours, packed, tmp_path, route):
    invoke("train", flat_colours, *TINY_TRAIN, *SPLIT, *ROUTES[route], "--out", tmp_path / "folder")
    invoke("train", packed, *TINY_TRAIN, "--seed", 3, *ROUTES[route], "--out", tmp_path / "shards")  # the same seed
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


def _records(shard: Path) -> list[dict]:
    """A shard's tf.train.Examples, read with TensorFlow alone (not tlcli's reader)."""
    import tensorflow as tf

    records = []
    for record in tf.data.TFRecordDataset(str(shard)).as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        text = {name: feature[name].bytes_list.value[0] for name in ("image", "split", "path")}
        records.append({"image": text["image"], "split": text["split"].decode(), "path": text["path"].decode(),
                        **{name: feature[name].int64_list.value[0] for name in ("label", "index")}})
    return records


def test_each_record_holds_its_images_original_bytes_dealt_to_the_shards_in_turn(flat_colours, packed):
    folder = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3))
    index = json.loads((packed / INDEX).read_text())
    for split in ("train", "val", "test"):
        shards = [shard for shard in index["shards"] if shard["split"] == split]
        for number, shard in enumerate(shards):
            records = _records(packed / shard["file"])
            assert len(records) == shard["records"] and (packed / shard["file"]).stat().st_size == shard["bytes"]
            assert [record["index"] for record in records] == list(range(number, len(folder.split(split)), len(shards)))
            for record in records:
                sample = folder.split(split)[record["index"]]
                assert record["image"] == sample.path.read_bytes() and record["label"] == sample.label
                assert record["split"] == split and record["path"] == sample.path.relative_to(flat_colours).as_posix()


def test_a_pack_written_whole_leaves_no_temporary_folder(flat_colours, tmp_path):
    invoke("pack", flat_colours, "--out", tmp_path / "pack", "--quiet")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pack"]
    index = json.loads((tmp_path / "pack" / INDEX).read_text())
    split = load_dataset(flat_colours)  # the split train makes by default
    assert index["records"] == {name: len(samples) for name, samples in split.splits.items() if samples}
    assert len(index["shards"]) == len(index["records"])  # a few kilobytes: one shard per split


@pytest.mark.parametrize("arguments, message", [
    (("--shard-mb", 0), "--shard-mb 0.0 is not a size"),
    (("--strict",), "4 file(s) cannot be used"),
], ids=["shard size", "strict"])
def test_what_pack_cannot_pack_is_one_line_and_nothing_is_written(messy_dataset, tmp_path, arguments, message):
    result = invoke("pack", messy_dataset, "--out", tmp_path / "pack", *arguments, expect=2)
    assert message in " ".join(result.output.split()) and result.output.strip().count("Error") == 1
    assert [path.name for path in tmp_path.iterdir()] == ["messy"]


def test_multi_label_data_is_refused_before_anything_is_written(tmp_path):
    """The command has no --multi-label; a library caller that passes such a label file is told."""
    from tlcli.data.labels import LabelFile
    from tlcli.data.pack import pack_dataset
    from tlcli.errors import TlcliError

    labels = write_multi_label_dataset(tmp_path / "listed", 12, size=16)
    with pytest.raises(TlcliError, match="tlcli pack does not pack multi-label data yet"):
        pack_dataset(labels.parent, tmp_path / "pack", labels=LabelFile.parse(labels, multi_label=True))
    assert [path.name for path in tmp_path.iterdir()] == ["listed"]


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
    invoke("train", tmp_path / "pack", *TINY_TRAIN, "--out", tmp_path / "run")
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


@pytest.fixture(scope="module")
def damaged_pack(colour_dataset, tmp_path_factory) -> Path:
    """A pack of small shards with one byte flipped in the middle of a shard of each split."""
    pack = tmp_path_factory.mktemp("damaged") / "pack"
    invoke("pack", colour_dataset, "--out", pack, "--shard-mb", 0.004, "--quiet")
    for split in ("train", "val", "test"):
        shard = sorted(pack.glob(f"{split}-*.tfrecord"))[1]
        damaged = bytearray(shard.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        shard.write_bytes(bytes(damaged))
    return pack


@pytest.mark.parametrize("command", [
    ("train", "{pack}", "--model", "tinynet", "--weights", "none", "--out", "{out}"),
    ("extract", "{pack}", "--model", "tinynet", "--weights", "none", "--image-size", 32, "--out", "{out}.npz"),
    ("evaluate", "{run}", "{pack}", "--out", "{out}"),
    ("inspect", "{pack}"),
])
def test_a_pack_with_a_flipped_byte_is_refused_in_one_line_not_read_as_fewer_images(damaged_pack, tiny_run, tmp_path,
                                                                                  command):
    """The shard reader once skipped a damaged record: a model trained on fewer images, exit 0;
    and a damaged pack's errors once quoted TensorFlow's {{function_node ...}} text."""
    places = {"{pack}": damaged_pack, "{run}": tiny_run, "{out}": tmp_path / "out", "{out}.npz": tmp_path / "out.npz"}
    result = runner.invoke(app, [str(places.get(part, part)) for part in command], terminal_width=400)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and lines[-1].startswith(f"Error: {damaged_pack / 'tlcli-pack.json'} does not match")
    assert "function_node" not in result.output
    assert not any(tmp_path.iterdir()), [path.name for path in tmp_path.iterdir()]


def test_a_run_replaced_from_a_damaged_pack_is_left_as_it_was(damaged_pack, solved_run, tmp_path):
    run = shutil.copytree(solved_run, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    before = {path.relative_to(run): path.read_bytes() for path in run.rglob("*") if path.is_file()}
    result = runner.invoke(app, ["train", str(damaged_pack), "--model", "tinynet", "--weights", "none",
                                 "--out", str(run), "--overwrite"], terminal_width=400)
    assert result.exit_code != 0 and "does not match its shards" in result.output
    assert {path.relative_to(run): path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
