"""The start and finish that every training run shares (`tlcli train`, `tlcli finetune`).

In order: tell where the run works and on what data; claim its directory, refusing an --out
that would lose anything before any model is built, and seed; build or load the model; start the
directory with config.json and labels.txt; fit inside `resumable()` (Ctrl-C says how to resume,
and an error before any progress takes the run away again); save the model and its reports.
Under several workers each worker writes a scratch folder of its own (runs.run_dir).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tlcli.data.dataset import Dataset
from tlcli.data.pipeline import image_dataset
from tlcli.data.row_cache import DEFAULT_MEMORY_BUDGET
from tlcli.distribute.placement import Placement, worker_run_dir
from tlcli.events import SILENT, Events
from tlcli.models.features import Features
from tlcli.runs.history import History
from tlcli.runs.names import HISTORY
from tlcli.runs.run_dir import RunDir
from tlcli.runtime import set_seed, versions
from tlcli.training.batches import DecodedImages, decode_splits
from tlcli.training.config import FitConfig
from tlcli.training.thresholds import tune_thresholds


@dataclass
class Outcome:
    run_dir: Path
    metrics: dict
    route: str


class TrainingRun:
    """One training run, from the report of where it works and on what data to its save. Made
    once the dataset is read, it tells `events` both at once (see `claimed` for the rest)."""

    def __init__(self, placement: Placement, dataset: Dataset, fit_config: FitConfig, events: Events = SILENT):
        self.placement, self.dataset, self.fit_config, self.events = placement, dataset, fit_config, events
        self.directory: RunDir | None = None  # claimed by `claimed`
        self.run_dir: Path | None = None  # this process's folder, once started
        self.history: History | None = None  # history.csv, read again on --resume
        self.decoded = DecodedImages({})
        self._kept: tuple | None = None
        events.placed(placement, fit_config.batch_size)
        events.dataset(dataset)

    @property
    def requested(self) -> Path:
        """The run directory the command was given (or its default): what the outcome names."""
        return self.directory.requested

    @contextlib.contextmanager
    def claimed(self, requested: Path, *, weights=None, source: Path | None = None, overwrite: bool,
                resume: bool) -> Iterator["TrainingRun"]:
        """Claim this process's run directory and seed, then run the block, which builds or loads
        the model (seeded first: a head's dropout layers draw their random state when they are
        made), `start`s the run, fits and `keep`s the model and its metrics. When the block ends
        the images decoded for the run are released, and, if it ended without error, what it
        kept is saved."""
        self.directory = RunDir(requested, worker_run_dir(requested, self.placement), self.placement.is_chief,
                                overwrite, resume)
        self.directory.claim(data=self.dataset.root, sources=read_sources(weights=weights, source=source))
        set_seed(self.fit_config.seed)
        try:
            yield self
        finally:
            self.decoded.close()
        if self._kept is not None:
            self.directory.save(*self._kept)

    def start(self, document: dict) -> Path:
        """Start the claimed directory with config.json (`document`, then where the run works and
        on what data) and labels.txt; this process's folder."""
        document = {**document, **run_facts(self.placement, self.fit_config.batch_size, self.dataset)}
        self.run_dir = self.directory.start(document, self.dataset.class_names)
        self.history = History.load(self.run_dir / HISTORY)
        return self.run_dir

    def resumable(self):
        """A block in which Ctrl-C says how to resume the run (runs.directory.resumable)."""
        return self.directory.resumable()

    def decode(self, enabled: bool, image_size: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> DecodedImages:
        """The training and validation images decoded once for the run, if `enabled` (see
        `decode_splits`); what spills from memory goes to a scratch file in the run's folder."""
        splits = {"train": self.dataset.split("train"), "val": self.dataset.splits.get("val", ())}
        self.decoded = decode_splits(enabled, splits, image_size, self.fit_config.batch_size, scratch_dir=self.run_dir,
                                     events=self.events, memory_budget=memory_budget)
        return self.decoded

    def keep(self, model, metrics: dict) -> None:
        """The model and metrics to save when the `claimed` block ends without error."""
        self._kept = (model, self.history, metrics)


def read_sources(*, weights=None, source: Path | None = None) -> dict[Path, str]:
    """What a run reads besides its dataset, which its --out must not hold: the --weights model
    (`models.weights.parse_weights`), the source run."""
    sources = {weights.path: f"the --weights {weights.kind}"} if weights is not None and weights.path else {}
    if source is not None:
        sources[source] = "the source run"
    return sources


def run_facts(placement: Placement, batch_size: int, dataset: Dataset) -> dict:
    """What config.json records of any run besides its options: where it ran, on what data."""
    return {
        "distribution": placement.describe(),
        "global_batch_size": placement.global_batch(batch_size),
        **dataset_facts(dataset),
        "versions": versions(),
    }


def dataset_facts(dataset: Dataset) -> dict:
    return {
        "data": str(dataset.root.resolve()),
        "layout": dataset.layout,
        "class_names": list(dataset.class_names),
        "counts": dataset.counts(),
        "skipped_files": len(dataset.problems),
        **(dataset.labels.describe() if dataset.labels is not None else {}),
    }


def validation_thresholds(model, head, val_features: Features | None, dataset: Dataset, image_size: int,
                          batch_size: int) -> dict[str, float]:
    """Per-label thresholds that maximise F1 on the validation images (from their cached
    features when there are some); 0.5 for every label without validation images, or without
    training images (the head cannot have learnt it: a threshold tuned on its near-zero
    probabilities would accept every image)."""
    val_samples = dataset.splits.get("val", ())
    if val_features is not None:
        probabilities, targets = head.predict(val_features.features, batch_size=1024, verbose=0), val_features.labels
    elif val_samples:
        data = image_dataset(val_samples, image_size, batch_size)
        targets = np.concatenate([np.asarray(labels) for _, labels in data])
        probabilities = model.predict(data, verbose=0)
    else:
        targets = probabilities = np.zeros((0, len(dataset.class_names)))
    trained = np.any([sample.targets for sample in dataset.splits.get("train", ())], axis=0)
    return tune_thresholds(targets, probabilities, dataset.class_names, trained=trained)
