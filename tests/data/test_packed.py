"""Reading packed datasets: a split's records in its own order, shared out among workers, read as
the folder's files are, and a pack whose files differ from its index refused in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, invoke
from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.data.packed import INDEX, SAMPLES, is_packed, read_encoded, read_pack, verify_shards
from tlcli.errors import TlcliError


def test_workers_read_disjoint_shard_files_that_together_hold_the_split(packed):
    from tlcli.data.packed import record_dataset

    split = load_dataset(packed).split("train")[0].record[0]
    assert len(split.files) >= 2
    read = [[int(index) for _, index in record_dataset(split, (2, worker)).as_numpy_iterator()] for worker in (0, 1)]
    assert read[0] and read[1] and not set(read[0]) & set(read[1])
    assert sorted(read[0] + read[1]) == list(range(split.count))
    # Worker 0 reads every second file, in the split's order: the records dealt to those files.
    assert read[0] == [index for index in range(split.count) if index % len(split.files) % 2 == 0]


def test_the_pipeline_reads_the_same_images_from_shards_as_from_files(flat_colours, packed):
    from tlcli.data.pipeline import image_dataset

    folder, shards = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3)), load_dataset(packed)
    for kwargs in ({}, {"shuffle": True, "seed": 5}):  # streamed, then from the byte column
        read = [[batch for batch in image_dataset(dataset.split("train"), 16, 5, with_index=True, **kwargs)]
                for dataset in (folder, shards)]
        for from_files, from_shards in zip(*read, strict=True):
            for left, right in zip(from_files, from_shards, strict=True):
                assert (left.numpy() == right.numpy()).all()


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
        arguments = ("train", pack, *TINY_TRAIN, "--out", tmp_path / "run") if command == "train" else ("inspect", pack)
        result = invoke(*arguments, expect=2)
        message = " ".join(result.output.split())
        assert f"{pack / INDEX} does not match its shards" in message and "tlcli pack" in message
        assert result.output.strip().count("Error") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_records_are_read_back_as_the_source_files_bytes_in_any_order_asked(flat_colours, packed):
    folder = load_dataset(flat_colours, SplitOptions(0.25, 0.125, 3)).split("val")
    split = read_pack(packed).splits["val"]
    positions = [5, 0, 11, 3]
    assert read_encoded(split, positions) == [folder[position].path.read_bytes() for position in positions]


def test_a_folder_is_a_pack_only_with_its_index(flat_colours, packed, tmp_path):
    assert is_packed(packed) and not is_packed(flat_colours)
    half = Path(shutil.copytree(packed, tmp_path / "half"))
    (half / INDEX).unlink()  # the index is written last: a pack killed before it is no pack
    assert not is_packed(half)


def test_a_verified_pack_reports_each_shard(packed):
    pack = read_pack(packed)
    verified = []
    verify_shards(pack, verified.append)
    assert verified == [1] * len(pack.index["shards"]) and pack.problems == ()


@pytest.mark.parametrize("change, message", [
    (lambda index: index.update(format="other"), 'is not a tlcli pack index (no "format": "tlcli-pack")'),
    (lambda index: index.update(version=2), "is a version 2 pack; this tlcli reads version 1"),
], ids=["format", "version"])
def test_an_index_of_another_kind_or_version_says_so(packed, tmp_path, change, message):
    pack = Path(shutil.copytree(packed, tmp_path / "pack"))
    index = json.loads((pack / INDEX).read_text())
    change(index)
    (pack / INDEX).write_text(json.dumps(index))
    with pytest.raises(TlcliError, match=re.escape(message)):
        read_pack(pack)


def test_a_samples_file_that_is_gone_or_not_json_is_a_damaged_pack(packed, tmp_path):
    pack = Path(shutil.copytree(packed, tmp_path / "pack"))
    (pack / SAMPLES).unlink()
    with pytest.raises(TlcliError, match=f"does not match its shards: {SAMPLES} is missing"):
        read_pack(pack)
    (pack / INDEX).write_text("[1, 2]")
    with pytest.raises(TlcliError, match=f"does not match its shards: {INDEX} is not a JSON object"):
        read_pack(pack)


def test_the_left_out_files_of_the_source_are_the_packs_problems(messy_dataset, tmp_path):
    invoke("pack", messy_dataset, "--out", tmp_path / "pack", "--quiet")
    problems = {problem.path: problem.reason for problem in read_pack(tmp_path / "pack").problems}
    expected = {problem.path: problem.reason for problem in load_dataset(messy_dataset).problems}
    assert problems == expected and len(problems) == 4
    with pytest.raises(TlcliError, match=r"4 file\(s\) cannot be used"):
        load_dataset(tmp_path / "pack", strict=True)


def test_a_pack_carries_its_own_labels(packed, tmp_path):
    from tlcli.data.labels import LabelFile

    (tmp_path / "labels.csv").write_text("path,label\n")
    with pytest.raises(TlcliError, match="is a packed dataset, which carries its own labels. Drop --labels"):
        load_dataset(packed, labels=LabelFile.parse(tmp_path / "labels.csv"))
