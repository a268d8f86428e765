"""The dataset a run was trained on, read again and split as the run was: what fine-tuning,
the range test, calibration and a fine-tuning search of a run read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tlcli.data.dataset import Dataset, SplitOptions, load_dataset
from tlcli.data.labels import LabelFile
from tlcli.errors import TlcliError
from tlcli.runs.directory import RunInfo
from tlcli.storage import location


def run_dataset(run: RunInfo, data: Path | None, strict: bool) -> tuple[Dataset, SplitOptions]:
    """The dataset of `run` (`data`, else the run's own; through the run's label file, if it had
    one), split exactly as the run was trained, and refused if its classes are not the run's."""
    source_config = run.config
    data_root = data or source_config.get("data")
    if not data_root:
        raise TlcliError(f"{run.path} does not record its dataset. Pass it with --data DATA.")
    options = SplitOptions(
        source_config.get("val_split", 0.2), source_config.get("test_split", 0.0), source_config.get("seed", 0)
    )
    labels = LabelFile.recorded(source_config)  # the run's label file, if it had one, read again
    dataset = load_dataset(location(data_root), options, strict=strict, labels=labels)
    changed = labels.changed_since(source_config) if labels is not None else None
    if changed:
        dataset = dataclasses.replace(dataset, notes=(*dataset.notes, changed))
    if tuple(dataset.class_names) != tuple(run.class_names):
        raise TlcliError(
            f"The classes in {data_root} ({', '.join(dataset.class_names)}) differ from the run's "
            f"({', '.join(run.class_names)}). Give a dataset with the run's classes."
        )
    return dataset, options
