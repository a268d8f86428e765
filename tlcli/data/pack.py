"""`tlcli pack`: a dataset's checked images, as TFRecord shards with an index (see `packed`).

The images keep their original encoded bytes (nothing is decoded again or re-encoded), with
their label, split, path and position in the split. The split is the one `train` would make
with the same options, so a run from the shards is the run from the folder.

Everything is written into a hidden temporary folder beside --out, the index last, then renamed
to --out: a killed pack leaves no folder that reads as a dataset. Files go through TensorFlow's
file systems (`tf.io.gfile`), as URLs will.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tlcli.data.dataset import (
    SPLITS,
    Dataset,
    SplitFields,
    SplitOptions,
    build_dataset,
    count_files,
    discover,
    refuse_problems,
    scan,
)
from tlcli.data.images import ImageInfo
from tlcli.data.labels import LabelFile, LabelFileFields
from tlcli.data.packed import FORMAT, INDEX, SAMPLES, VERSION, is_packed, shard_name
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.runs.locks import locks_outputs
from tlcli.runs.outputs import building, claim_output
from tlcli.runs.staging import staged_output
from tlcli.storage import file_sha256, location, relative_name

DEFAULT_SHARD_MB = 150


@dataclass(frozen=True)
class PackConfig(LabelFileFields, SplitFields):
    """What `tlcli pack` is asked: a dataset, the split to pack it with, and where to."""

    data: Path
    out: Path
    shard_mb: float = DEFAULT_SHARD_MB
    strict: bool = False
    overwrite: bool = False

    def __post_init__(self):
        self.split_options()
        self.label_file()  # a bad --label-columns is refused here



@dataclass(frozen=True)
class PackOutcome:
    out: Path
    records: dict[str, int]
    shards: int
    bytes: int
    problems: int


def pack(config: PackConfig, events: Events = SILENT) -> PackOutcome:
    """`tlcli pack`: the dataset packed into `config.out`, a folder or a URL (packed into a local
    folder, then published with its index just before the marker: runs.staging)."""
    if is_packed(config.data):  # before its class folders are counted
        raise TlcliError(f"{config.data} is a packed dataset already. Pass the folder of images it was packed from.")
    label_file = config.label_file()
    sources = {config.labels: "the --labels file"} if config.labels is not None else None
    with staged_output(config.out, "pack", overwrite=config.overwrite, data=config.data, last=(INDEX,),
                       sources=sources) as staged:
        outcome = pack_dataset(config.data, staged.local, config.split_options(), labels=label_file,
                               shard_mb=config.shard_mb, strict=config.strict, overwrite=config.overwrite,
                               events=events)
        return dataclasses.replace(outcome, out=staged.public(outcome.out))


@locks_outputs
def pack_dataset(
    data: Path,
    out: Path,
    options: SplitOptions = SplitOptions(),
    *,
    labels: LabelFile | None = None,
    shard_mb: float = DEFAULT_SHARD_MB,
    strict: bool = False,
    overwrite: bool = False,
    events: Events = SILENT,
) -> PackOutcome:
    """Check, split and pack the dataset `data` into the folder `out`."""
    if not shard_mb > 0:
        raise TlcliError(f"--shard-mb {shard_mb} is not a size. Give the shards' size in megabytes, e.g. 150.")
    data, out = location(data), Path(out).expanduser()
    if is_packed(data):
        raise TlcliError(f"{data} is a packed dataset already. Pass the folder of images it was packed from.")
    # One count for both passes (a console shows one bar at a time): each file is checked, then each usable one packed.
    with events.counting("Checking, then packing images", 2 * count_files(discover(data, labels))) as advance:
        found = scan(data, advance, labels)
        if strict:
            refuse_problems(found.problems)
        dataset = build_dataset(found, options)
        if dataset.multi_label:
            raise TlcliError("tlcli pack does not pack multi-label data yet. Train from the folder and its label file.")
        sources = {labels.path: "the --labels file"} if labels is not None else {}
        claim_output(out, "pack", overwrite=overwrite, data=dataset.places, sources=sources)
        with building(out, "pack") as folder:  # swapped in whole: a kill leaves the old pack, or none
            index = _write_pack(folder, dataset, found.checked, options, labels, shard_mb * 1e6, advance)
    return PackOutcome(out, dict(index["records"]), len(index["shards"]), sum(s["bytes"] for s in index["shards"]),
                       len(index["problems"]))


def _write_pack(folder: Path, dataset: Dataset, checked: dict, options: SplitOptions, labels: LabelFile | None,
                shard_bytes: float, advance) -> dict:
    """Every shard, the samples file and the index (last) in `folder`; `advance(1)` per image packed."""
    from tlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    root = dataset.root
    shards, rows, source_digest = [], {}, hashlib.sha256()
    for split in SPLITS:
        samples = dataset.splits.get(split)
        if not samples:
            continue
        total = sum(sample.path.stat().st_size for sample in samples)
        count = max(1, min(len(samples), math.ceil(total / shard_bytes)))
        names = [shard_name(split, number, count) for number in range(count)]
        writers = [tf.io.TFRecordWriter(str(folder / name)) for name in names]
        records = [0] * count
        rows[split] = []
        try:
            for position, sample in enumerate(samples):
                relative = relative_name(root, sample.path)
                image = _read_unchanged(sample.path, checked[sample.path])
                writers[position % count].write(_example(tf, image, sample.label, split, relative, position))
                records[position % count] += 1
                rows[split].append([relative, sample.label, sample.needs_pil, checked[sample.path].digest])
                source_digest.update(f"{split}\t{relative}\t{sample.label}\t{checked[sample.path].digest}\n".encode())
                advance(1)
        finally:
            for writer in writers:
                writer.close()
        shards += [{"file": name, "split": split, "records": records[number],
                    "bytes": tf.io.gfile.stat(str(folder / name)).length, "sha256": file_sha256(folder / name)}
                   for number, name in enumerate(names)]

    _write(tf, folder / SAMPLES, json.dumps(rows, separators=(",", ":")))
    infos = [checked[sample.path] for samples in dataset.splits.values() for sample in samples]
    index = {
        "format": FORMAT,
        "version": VERSION,
        "layout": dataset.layout,
        "classes": list(dataset.class_names),
        "counts": dataset.counts(),
        "records": {split: len(split_rows) for split, split_rows in rows.items()},
        "image_sizes": _sizes(infos),
        "formats": dict(Counter(info.format for info in infos).most_common()),
        "modes": dict(Counter(info.mode for info in infos).most_common()),
        "shards": shards,
        "samples": {"file": SAMPLES, "sha256": file_sha256(folder / SAMPLES)},
        "source": {
            "data": str(root.resolve()),
            "labels": labels.describe() if labels is not None else None,
            "split": {"val_split": options.val_split, "test_split": options.test_split, "seed": options.seed},
            "sha256": source_digest.hexdigest(),  # of every packed file's split, path, label and blake2b
        },
        "notes": list(dataset.notes),
        "problems": [{"path": relative_name(root, problem.path), "reason": problem.reason}
                     for problem in dataset.problems],
    }
    _write(tf, folder / INDEX, json.dumps(index, indent=2) + "\n")  # last: without it, no dataset
    return index


def _read_unchanged(path: Path, info: ImageInfo) -> bytes:
    """The file's bytes, as they were checked."""
    from tlcli.runtime import import_tensorflow

    with import_tensorflow().io.gfile.GFile(str(path), "rb") as handle:
        image = handle.read()
    if hashlib.blake2b(image, digest_size=16).hexdigest() != info.digest:
        raise TlcliError(f"{path} changed while it was being packed. Pack again once the dataset is not being written.")
    return image


def _example(tf, image: bytes, label: int, split: str, path: str, position: int) -> bytes:
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {"image": feature(image), "label": feature(label), "split": feature(split.encode()),
                "path": feature(path.encode()), "index": feature(position)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _sizes(infos: list[ImageInfo]) -> dict:
    if not infos:
        return {}
    return {axis: {"min": min(values), "median": int(statistics.median(values)), "max": max(values)}
            for axis, values in (("width", [info.width for info in infos]), ("height", [info.height for info in infos]))}


def _write(tf, path: Path, text: str) -> None:
    with tf.io.gfile.GFile(str(path), "w") as handle:
        handle.write(text)
