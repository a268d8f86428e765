"""Packed datasets (`tlcli pack`): checked images as TFRecord shards, with an index.

    tlcli-pack.json   the index, written last: format and version, classes, counts per split,
                      image-size hints, every shard with its records, bytes and sha256, the
                      samples file and the source (its path, label file, split and checksum)
    samples.json      per split, one row per record: path (relative to the source), label,
                      needs_pil, digest (blake2b of the image's bytes, as the checks computed it)
    <split>-00000-of-00003.tfrecord ...
                      one tf.train.Example per image: its original encoded bytes, label, split,
                      path and its position in the split

A split's records are dealt out in turn, record i to shard i mod n, so that reading the shards
interleaved one record at a time gives the records back in the split's own order: a packed run
reads what the folder run read, in the same order. A folder without the index is not a packed
dataset (the index is written last); a shard whose size differs from the index's is refused
before anything is read or written.

Nothing here imports TensorFlow until records are read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tlcli.data.images import Problem
from tlcli.errors import TlcliError
from tlcli.storage import Location, check_readable, file_sha256, location

INDEX = "tlcli-pack.json"
SAMPLES = "samples.json"
FORMAT = "tlcli-pack"
VERSION = 1


def shard_name(split: str, number: int, count: int) -> str:
    return f"{split}-{number:05d}-of-{count:05d}.tfrecord"


@dataclass(frozen=True)
class PackedSplit:
    """Where one split's records are: its shard files, in the order its records were dealt."""

    folder: str
    split: str
    shards: tuple[str, ...]
    count: int

    @property
    def files(self) -> list[str]:
        return [os.path.join(self.folder, name) for name in self.shards]


@dataclass(frozen=True)
class Pack:
    root: Path
    index: dict
    rows: dict[str, list[list]]  # split -> [relative path, label, needs_pil, digest] per record
    splits: dict[str, PackedSplit]

    @property
    def problems(self) -> tuple[Problem, ...]:
        """The files the source had that were not packed, and why."""
        source = location(self.index["source"]["data"])
        return tuple(Problem(source / item["path"], item["reason"]) for item in self.index.get("problems", []))


def is_packed(root: Location | str) -> bool:
    check_readable(location(root), "Dataset")
    try:
        return (location(root) / INDEX).is_file()
    except OSError:
        return False


def _damaged(root: Location, what: str) -> TlcliError:
    return TlcliError(
        f"{location(root) / INDEX} does not match its shards: {what}. The packed dataset is damaged or incomplete: "
        "pack the dataset again (tlcli pack DATA --out PACK --overwrite)."
    )


def read_pack(root: Path) -> Pack:
    """Read a packed dataset's index and samples, and check that every shard is there, whole.

    A shard's size is compared with the index's (a truncated or swapped shard is refused here,
    in one line); its sha256 is compared only by `verify_shards`, which reads every byte.
    """
    root = location(root)
    index = _read_json(root / INDEX, root)
    if index.get("format") != FORMAT:
        raise TlcliError(f"{root / INDEX} is not a tlcli pack index (no \"format\": \"{FORMAT}\"). "
                         "Pass a folder written by tlcli pack, or a dataset folder.")
    if index.get("version") != VERSION:
        raise TlcliError(f"{root / INDEX} is a version {index.get('version')} pack; this tlcli reads version "
                         f"{VERSION}. Pack the dataset again with this tlcli.")
    samples_file = root / index["samples"]["file"]
    if not samples_file.is_file():
        raise _damaged(root, f"{samples_file.name} is missing")
    if file_sha256(samples_file) != index["samples"]["sha256"]:
        raise _damaged(root, f"{samples_file.name} differs from the one packed (its sha256)")
    rows = _read_json(samples_file, root)
    splits = {}
    for split, count in index["records"].items():
        shards = [shard for shard in index["shards"] if shard["split"] == split]
        for shard in shards:
            path = root / shard["file"]
            if not path.is_file():
                raise _damaged(root, f"shard {shard['file']} is missing")
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise _damaged(root, f"shard {shard['file']} is {size} bytes, the index says {shard['bytes']}")
        if sum(shard["records"] for shard in shards) != count or len(rows.get(split, ())) != count:
            raise _damaged(root, f"the {split} split's {count} records are not all in its shards and samples")
        splits[split] = PackedSplit(str(root), split, tuple(shard["file"] for shard in shards), count)
    return Pack(root, index, rows, splits)


def verify_shards(pack: Pack, on_verified=None) -> None:
    """Compare every shard's sha256 with the index's (reads every byte)."""
    for shard in pack.index["shards"]:
        if file_sha256(pack.root / shard["file"]) != shard["sha256"]:
            raise _damaged(pack.root, f"shard {shard['file']} differs from the one packed (its sha256)")
        if on_verified is not None:
            on_verified(1)


def _read_json(path: Location, root: Location) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _damaged(root, f"{path.name} cannot be read ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise _damaged(root, f"{path.name} is not a JSON object")
    return document


def record_dataset(split: PackedSplit, shard: tuple[int, int] = (1, 0)):
    """(encoded image, position in the split) of a split's records, read from its shards in
    parallel, interleaved one record at a time: in the split's own order. With `shard=(count,
    index)` a worker reads every count-th shard file (every count-th record when there are
    fewer files than workers), as tf.data's own file sharding does."""
    from tlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    files = tf.data.Dataset.from_tensor_slices(split.files)
    count, index = shard
    by_file = count > 1 and len(split.files) >= count
    if by_file:
        files = files.shard(count, index)
    records = files.interleave(
        lambda name: tf.data.TFRecordDataset(name),
        cycle_length=max(1, len(split.files)),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if count > 1 and not by_file:
        records = records.shard(count, index)
    features = {"image": tf.io.FixedLenFeature([], tf.string), "index": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return example["image"], example["index"]

    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def tensorflow_reason(error) -> str:
    """A TensorFlow error's reason, without the graph node and op names it wraps it in."""
    text = error.message.strip().splitlines()[0] if error.message.strip() else type(error).__name__
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


@contextlib.contextmanager
def reading_shards(samples):
    """While `samples` are read as a stream: a shard that fails its record checksum (a damaged
    pack) is one line naming the pack, never a model trained on fewer images."""
    from tlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    try:
        yield
    except tf.errors.DataLossError as error:
        if not samples or samples[0].record is None:
            raise
        raise _damaged(location(samples[0].record[0].folder),
                       f"a shard cannot be read ({tensorflow_reason(error)})") from None


def read_encoded(split: PackedSplit, positions) -> list[bytes]:
    """The encoded images at `positions` of a split, in that order (read once, in the split's
    order, and kept in memory: the byte column a shuffled epoch draws from)."""
    from tlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    wanted = set(positions)
    found: dict[int, bytes] = {}
    try:
        for image, position in record_dataset(split).as_numpy_iterator():
            if int(position) in wanted:
                found[int(position)] = image
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError) as error:
        raise _damaged(location(split.folder), f"the {split.split} shards cannot be read ({tensorflow_reason(error)})")
    missing = wanted - set(found)
    if missing:
        raise _damaged(location(split.folder), f"{len(missing)} record(s) of the {split.split} split are not in its shards")
    return [found[position] for position in positions]
