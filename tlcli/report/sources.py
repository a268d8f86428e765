"""What a report is made of, read from the folders the commands wrote: a run, evaluate's reports,
an audit and explain's maps.

A folder that is not what it should be is refused in one line; a file a folder may lack (no
curves for a solved head, no calibration) is simply absent. Evaluate hands its reports over
before they are written, through the same `Files` reader that reads them from a folder here.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tlcli.data.packed import INDEX
from tlcli.errors import TlcliError
from tlcli.runs.directory import read_json, read_run
from tlcli.runs.names import (
    AUDIT_JSON,
    CALIBRATION,
    CONFUSION_MATRIX,
    CURVES,
    EVALUATION,
    EXPLAIN_FOLDER,
    EXPLAIN_JSON,
    HISTORY,
    LR_FIND_PLOT,
    METRICS,
    MISCLASSIFIED,
    PENALTY,
    WORST_EXPLAINED,
)
from tlcli.runs.outputs import json_object, output_kind
from tlcli.storage import Location, location

Files = Callable[[str], "bytes | None"]  # a folder's file by name; None when it has none
EVALUATION_PICTURES = (CONFUSION_MATRIX, CALIBRATION, WORST_EXPLAINED)


def folder_files(folder: Location) -> Files:
    """A reader of the files in `folder` (a path or a URL)."""
    def read(name: str) -> bytes | None:
        try:
            return (folder / name).read_bytes() if (folder / name).is_file() else None
        except OSError:
            return None

    return read


@dataclass(frozen=True)
class RunSource:
    """A run (or an export, or a model.keras with its labels.txt) as its files tell it."""

    folder: Location
    kind: str | None  # "run" or "export" for a folder tlcli made
    class_names: tuple[str, ...]
    image_size: int
    backbone: str
    config: dict
    metrics: dict
    history: list[dict]  # history.csv's rows
    pictures: dict[str, bytes]  # penalty.png, curves.png and the range tests' plots, by name
    explanations: dict[str, str] = field(default_factory=dict)  # image path -> its explain picture

    def range_test_plot(self, stage: str) -> bytes | None:
        return self.pictures.get(range_test_name(stage))

    def dataset_checksum(self) -> str | None:
        """The packed dataset's checksum (every packed file's split, path, label and digest), when
        the run read a pack that is still there; None otherwise."""
        data = self.config.get("data")
        if not data:
            return None
        try:
            return json_object(location(data) / INDEX).get("source", {}).get("sha256")
        except (OSError, TlcliError, AttributeError):
            return None


def read_run_source(path: Location, explanations: Sequence[Location] = ()) -> RunSource:
    """The run at `path` (refused in one line when it is not one), with the maps of its default
    explain folder and of the `explanations` folders."""
    info = read_run(path)
    files = folder_files(info.path)
    metrics = read_json(info.path / METRICS) if (info.path / METRICS).is_file() else {}
    names = (PENALTY, CURVES, *(range_test_name(stage) for stage in metrics.get("stage_rates") or {}))
    pictures = {name: content for name in names if (content := files(name)) is not None}
    maps = read_explanations(info.path / EXPLAIN_FOLDER, required=False)
    for folder in explanations:
        maps.update(read_explanations(location(folder), required=True))
    return RunSource(info.path, output_kind(info.path), info.class_names, info.image_size, info.backbone,
                     info.config, metrics, _csv_rows(files(HISTORY)), pictures, maps)


def range_test_name(stage: str) -> str:
    """The plot of a fine-tuning stage's range test, as finetune names it in the run."""
    return f"{Path(LR_FIND_PLOT).stem}_{stage}.png"


def read_explanations(folder: Location, required: bool) -> dict[str, str]:
    """{image path: its picture} from an explain folder's explain.json (the first map of each image)."""
    if not (folder / EXPLAIN_JSON).is_file():
        if required:
            raise TlcliError(f"--explanations {folder} holds no {EXPLAIN_JSON}. Pass a folder that "
                             "`tlcli explain` wrote.")
        return {}
    maps = {}
    for record in read_json(folder / EXPLAIN_JSON).get("images", []):
        if isinstance(record, dict) and record.get("path") and record.get("picture"):
            maps.setdefault(place_key(record["path"]), str(record["picture"]))
    return maps


def place_key(path) -> str:
    """A path spelled so that two names of one local file compare equal (URLs stay as they are)."""
    path = str(path)
    return path if "://" in path else os.path.realpath(path)


def explanation_for(run: RunSource, image: str) -> str | None:
    return run.explanations.get(place_key(image))


@dataclass(frozen=True)
class EvaluationSource:
    """One `tlcli evaluate`'s reports."""

    folder: Location
    document: dict  # evaluation.json
    misclassified: list[dict]  # misclassified.csv's rows, worst first
    pictures: dict[str, bytes]  # the confusion matrix, the reliability diagram, the worst losses explained

    @property
    def multi_label(self) -> bool:
        return bool(self.document.get("multi_label"))


def read_evaluation(files: Files, folder: Location) -> EvaluationSource:
    """An evaluation's reports through `files` (a folder's, or evaluate's before it writes them)."""
    raw = files(EVALUATION)
    if raw is None:
        raise TlcliError(f"--evaluation {folder} holds no {EVALUATION}. Pass a folder that `tlcli evaluate --out` "
                         "wrote, or the run it wrote its reports into.")
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise TlcliError(f"{folder / EVALUATION} is damaged (not a JSON object). Evaluate again to write it anew.")
    rows = _csv_rows(files(MISCLASSIFIED))
    if rows and "true_probability" in rows[0]:  # single-label: the lowest probability of the true class first
        rows.sort(key=lambda row: _number(row["true_probability"]))
    pictures = {name: content for name in EVALUATION_PICTURES if (content := files(name)) is not None}
    return EvaluationSource(folder, document, rows, pictures)


def read_evaluation_folder(folder: Location) -> EvaluationSource:
    if not location(folder).is_dir():
        raise TlcliError(f"--evaluation {folder} is not a folder. Pass the folder of a `tlcli evaluate`'s reports.")
    return read_evaluation(folder_files(location(folder)), location(folder))


@dataclass(frozen=True)
class AuditSource:
    folder: Location
    document: dict  # audit.json


def read_audit(folder: Location) -> AuditSource:
    folder = location(folder)
    if not (folder / AUDIT_JSON).is_file():
        raise TlcliError(f"--audit {folder} holds no {AUDIT_JSON}. Pass the folder that `tlcli audit --out` wrote.")
    return AuditSource(folder, read_json(folder / AUDIT_JSON))


def _csv_rows(content: bytes | str | None) -> list[dict]:
    if content is None:
        return []
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    return list(csv.DictReader(io.StringIO(text)))


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("inf")
