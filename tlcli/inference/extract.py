"""`tlcli extract`: a frozen backbone's features for every image of a dataset, in one .npz file.

The file holds plain NumPy arrays only (strings as unicode arrays), so that
`numpy.load(path, allow_pickle=False)` reads it:

    features     float32, images x feature size
    labels       int64, the class of each image (an index into class_names)
    class_names  unicode, in label order
    splits       unicode, "train", "val" or "test" for each image
    paths        unicode, each image's file
    backbone, weights, image_size, pooling, preprocessing   scalars: how the features were made
    distribution  scalar: JSON of the strategy, devices, replicas and precision used

Feature rows stream to a scratch file batch by batch and are copied into the archive at the
end, so memory does not grow with the number of images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcli.data.dataset import SPLITS, Dataset, Sample, SplitFields, load_dataset
from tlcli.data.images import Problem
from tlcli.data.labels import MultiLabelFileFields
from tlcli.data.pipeline import DECODE_FAILED
from tlcli.distribute.placement import DistributionFields, Placement, place
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.models.backbones import BackboneSpec, get_backbone, resolve_image_size
from tlcli.models.weights import WeightsSource, parse_weights
from tlcli.runs.outputs import claim_file
from tlcli.runs.staging import staged_file
from tlcli.storage import Url, location

POOLINGS = ("avg", "max")
FEATURES_SUFFIX = ".npz"
_COPY_CHUNK = 16 * 2**20


@dataclass(frozen=True)
class ExtractConfig(MultiLabelFileFields, SplitFields, DistributionFields):
    data: Path
    model: str
    out: Path
    weights: str = "imagenet"
    image_size: int | None = None
    pooling: str = "avg"
    batch_size: int = 32
    strict: bool = False
    overwrite: bool = False

    def __post_init__(self):
        labels = self.label_file()  # a bad --label-columns is refused here
        if self.pooling not in POOLINGS:
            raise TlcliError(f"--pooling {self.pooling!r} is not one of {'|'.join(POOLINGS)}. Use --pooling avg or max.")
        if self.batch_size < 1:
            raise TlcliError(f"--batch-size {self.batch_size} must be at least 1.")
        labels_folder = labels.path.parent if labels is not None else None
        claim_file(self.out, suffix=FEATURES_SUFFIX, overwrite=self.overwrite, data=(location(self.data), labels_folder))
        self.distribution()


@dataclass
class Extraction:
    """What will be extracted: the images in split order, and the backbone that reads them."""

    config: ExtractConfig
    spec: BackboneSpec
    image_size: int
    weights: WeightsSource
    dataset: Dataset
    samples: list[Sample]
    splits: list[str]  # the split of each sample


@dataclass
class ExtractionResult:
    out: Path
    images: int
    feature_size: int
    skipped: list[Problem] = field(default_factory=list)  # files the data layer or TensorFlow refused
    seconds: float = 0.0  # extraction proper: from building the pipeline to the file written
    first_batch_seconds: float | None = None  # from the start of the process to the first batch done
    placement: Placement | None = None  # where it ran: only the chief of a cluster writes the file

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def extract_dataset(config: ExtractConfig, events: Events = SILENT) -> ExtractionResult:
    """`tlcli extract`: place the work, check the data and the backbone (every error before any
    compute), then write the features file, telling `events` where it runs, what it read and how
    far it has got."""
    placement = place(config.distribution(), config.data)  # first: multi-worker needs it so
    plan = plan_extraction(config)
    events.placed(placement, config.batch_size)
    events.dataset(plan.dataset)
    return dataclasses.replace(extract(plan, events, placement=placement), placement=placement)


def plan_extraction(config: ExtractConfig) -> Extraction:
    """Resolve the backbone and weights and check the data: every error before any compute."""
    spec = get_backbone(config.model)
    image_size = resolve_image_size(spec, config.image_size)
    weights = parse_weights(config.weights)
    dataset = load_dataset(
        config.data, config.split_options(), config.strict,
        labels=config.label_file(),
    )
    samples, splits = [], []
    for split in SPLITS:
        for sample in dataset.splits.get(split, ()):
            samples.append(sample)
            splits.append(split)
    return Extraction(config, spec, image_size, weights, dataset, samples, splits)


def build_extractor(plan: Extraction, placement=None):
    """The frozen backbone, its variables placed by the strategy when a placement is given.

    Seeded, so that randomly initialised weights (--weights none) give the same features each time.
    """
    from tlcli.models.build import build_feature_extractor
    from tlcli.runtime import set_seed

    set_seed(plan.config.seed)
    with placement.strategy.scope() if placement is not None else contextlib.nullcontext():
        return build_feature_extractor(plan.spec, plan.image_size, plan.weights, plan.config.pooling)


def extract(plan: Extraction, events: Events = SILENT, extractor=None, placement=None) -> ExtractionResult:
    """Run the frozen backbone over every image of the plan and write the features file, the
    images counted through `events` as they are done.

    `extractor` (from `build_extractor`) may be given to reuse one already built and traced.
    With a `placement`, the batches are shared among its replicas and workers; every worker
    computes, and only the chief writes the file.
    """
    description = f"Extracting ({plan.spec.name} at {plan.image_size}px)"
    with events.counting(description, len(plan.samples), rate="images") as advance:
        return _extract(plan, advance, extractor, placement)


def _extract(plan: Extraction, advance, extractor, placement) -> ExtractionResult:
    from tlcli.models.features import feature_batches, feature_shape

    config = plan.config
    extractor = extractor if extractor is not None else build_extractor(plan, placement)
    shape = feature_shape(extractor)
    writes = placement is None or placement.is_chief
    out = location(config.out)
    if writes and not isinstance(out, Url):
        out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    first_batch_seconds = None
    kept = []
    rows_folder = out.parent if writes and not isinstance(out, Url) else None
    with tempfile.TemporaryFile(dir=rows_folder, prefix=f".{out.name}.rows.") as rows:
        for batch in feature_batches(extractor, plan.samples, plan.image_size, config.batch_size, placement):
            rows.write(np.ascontiguousarray(batch.features, dtype="<f4").tobytes())
            kept.append(batch.indices)
            if first_batch_seconds is None:
                first_batch_seconds = seconds_since_process_start()
            advance(len(batch.indices))
        indices = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        if not len(indices):
            raise TlcliError(
                f"None of the {len(plan.samples)} image(s) in {config.data} could be decoded. "
                "Check the files with `tlcli inspect`."
            )
        if writes:
            with staged_file(out) as local:  # at a URL: written here, then uploaded whole
                _write_archive(local, rows, (len(indices), *shape), _described_arrays(plan, indices, placement))
    seconds = time.perf_counter() - started
    failed = sorted(set(range(len(plan.samples))) - set(indices.tolist()))
    skipped = list(plan.dataset.problems) + [Problem(plan.samples[i].path, DECODE_FAILED) for i in failed]
    return ExtractionResult(out, len(indices), int(np.prod(shape)), skipped, seconds, first_batch_seconds)


def _described_arrays(plan: Extraction, indices: np.ndarray, placement=None) -> dict[str, np.ndarray]:
    """Every array of the file except the features, for the rows in `indices` (in row order)."""
    config = plan.config
    kept = [plan.samples[index] for index in indices]
    distribution = placement.describe() if placement is not None else {"strategy": "default", "replicas": 1}
    # Multi-label images have no single label (-1): their multi-hot targets go beside.
    targets = ({"targets": np.array([sample.targets for sample in kept], np.int64).reshape(len(kept), -1)}
               if plan.dataset.multi_label else {})
    return {
        **targets,
        "labels": np.array([sample.label for sample in kept], np.int64),
        "class_names": np.array(plan.dataset.class_names, dtype=np.str_),
        "splits": np.array([plan.splits[index] for index in indices], dtype=np.str_),
        "paths": np.array([str(sample.path) for sample in kept], dtype=np.str_),
        "backbone": np.array(plan.spec.name),
        "weights": np.array(str(plan.weights)),
        "image_size": np.array(plan.image_size, np.int64),
        "pooling": np.array(config.pooling),
        "preprocessing": np.array(plan.spec.preprocessing),
        "distribution": np.array(json.dumps(distribution)),
    }


def _write_archive(out: Path, rows, shape: tuple[int, ...], arrays: dict[str, np.ndarray]) -> None:
    """An .npz (a zip of .npy files, as numpy.savez writes) with the features copied from `rows`,
    replacing `out` only once complete."""
    from tlcli.runs.atomic import atomic_file, npz_comment

    with atomic_file(out) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.comment = npz_comment()  # tlcli's signature: --overwrite may replace the file later
        with archive.open("features.npy", "w", force_zip64=True) as member:
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(member, header)
            rows.seek(0)
            shutil.copyfileobj(rows, member, _COPY_CHUNK)
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def seconds_since_process_start() -> float | None:
    """How long this process has existed (Linux), to tell the user the time to the first batch."""
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as uptime:
            now = float(uptime.read().split()[0])
        return now - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
