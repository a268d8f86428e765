"""`tlcli audit`: read a dataset as every command does, extract its features once, and report
the likely label errors, the near-duplicates (leakage across splits first) and the outliers.

Every output is claimed through the output policy (runs.outputs) before any work: --out is a
folder of kind "audit", built beside its place and swapped in whole; --fix-labels is one signed
CSV file. Nothing is ever written into the dataset, and no image is changed, moved or deleted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.audit.findings import AuditedImages, Findings
from tlcli.audit.fix_labels import fix_labels_csv
from tlcli.audit.report import audit_document, report_files
from tlcli.data.dataset import SPLITS, SplitFields
from tlcli.data.labels import MultiLabelFileFields
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.runs.atomic import write_atomic
from tlcli.runs.locks import locks_outputs
from tlcli.runs.outputs import building, claim_file, claim_output
from tlcli.runs.staging import staged_output
from tlcli.storage import Location, Url, location

POOLING = "avg"  # the features `train` caches and solves its head on by default
FIX_LABELS_SUFFIX = ".csv"


@dataclass(frozen=True)
class AuditConfig(MultiLabelFileFields, SplitFields):
    """What `tlcli audit` is asked: the dataset, the backbone that reads it, and where to report."""

    data: Path
    model: str = "resnet50"
    weights: str = "imagenet"
    image_size: int | None = None
    batch_size: int = 32
    strict: bool = False
    out: Path | None = None  # a folder for the reports; None: the terminal only
    fix_labels: Path | None = None  # a label CSV with the suggested labels beside the given ones
    overwrite: bool = False

    def __post_init__(self):
        self.label_file()  # a bad --label-columns is refused here
        self.split_options()
        if self.batch_size < 1:
            raise TlcliError(f"--batch-size {self.batch_size} must be at least 1.")

    def dataset_places(self) -> tuple:
        labels = self.label_file()
        return (location(self.data),) + ((labels.path.parent,) if labels is not None else ())


@dataclass
class AuditReport:
    """What `audit` found: the report (as audit.json holds it) and the files written."""

    document: dict
    findings: Findings
    out: Location | None = None  # the reports' folder, when --out was given
    written: list[str] = field(default_factory=list)  # the report files' names in it
    fix_labels: Location | None = None


@locks_outputs
def audit(config: AuditConfig, events: Events = SILENT) -> AuditReport:
    """Claim the outputs, read the dataset and its features, run the three sections and write
    the reports (the terminal's tables are the command's)."""
    places = config.dataset_places()
    fix_labels = claim_fix_labels(config, places)
    with staged_output(config.out, "audit", overwrite=config.overwrite, data=places) as staged:
        if staged.local is not None:
            claim_output(staged.local, "audit", overwrite=config.overwrite, data=places)
        images, described = read_images(config, events)
        findings = run_sections(images, config.seed, events)
        document = audit_document(findings, described)
        report = AuditReport(document, findings, staged.target, fix_labels=fix_labels)
        if staged.local is not None:
            contents = report_files(findings, document)
            with building(staged.local, "audit") as built:
                for name, content in contents.items():
                    write_atomic(built / name, content)
            report.written = list(contents)
        if fix_labels is not None:
            write_atomic(fix_labels, fix_labels_csv(findings))
    return report


def claim_fix_labels(config: AuditConfig, places: tuple) -> Location | None:
    """--fix-labels through the output policy: a new .csv (or tlcli's own, with --overwrite),
    outside the dataset and outside --out (which is swapped whole)."""
    if config.fix_labels is None:
        return None
    path = claim_file(config.fix_labels, suffix=FIX_LABELS_SUFFIX, overwrite=config.overwrite, data=places,
                      option="--fix-labels")
    if config.out is not None and _inside(path, location(config.out)):
        raise TlcliError(f"--fix-labels {path} lies inside --out {config.out}, which the audit replaces whole. "
                         "Choose a path outside it.")
    return path


def _inside(path: Location, folder: Location) -> bool:
    if isinstance(path, Url) or isinstance(folder, Url):
        return str(path).startswith(str(folder).rstrip("/") + "/")
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def read_images(config: AuditConfig, events: Events) -> tuple[AuditedImages, dict]:
    """Check the backbone and the data (every error before any compute), then run the frozen
    backbone over every image once, as `extract` and `train` do; (the images read, what they are)."""
    from tlcli.data.dataset import load_dataset
    from tlcli.models.backbones import get_backbone, resolve_image_size
    from tlcli.models.weights import parse_weights

    spec = get_backbone(config.model)
    image_size = resolve_image_size(spec, config.image_size)
    weights = parse_weights(config.weights)
    dataset = load_dataset(config.data, config.split_options(), config.strict, labels=config.label_file(),
                           lenient=True)
    events.dataset(dataset)
    order = [(sample, split) for split in SPLITS for sample in dataset.splits.get(split, ())]
    features = _features(spec, image_size, weights, [sample for sample, _ in order], config, events)
    kept = set(features.indices.tolist())
    images = AuditedImages(
        dataset.root, dataset.class_names, [order[index][0] for index in features.indices],
        [order[index][1] for index in features.indices], features.features, dataset.multi_label,
        config.label_delimiter, _source(dataset.root), [item for index, item in enumerate(order) if index not in kept])
    described = {"data": str(config.data), "model": spec.name, "weights": str(weights), "image_size": image_size,
                 "pooling": POOLING, "dataset_notes": list(dataset.notes),
                 "skipped": [{"path": str(problem.path), "reason": problem.reason} for problem in dataset.problems]
                 + [{"path": str(sample.path), "reason": "could not be decoded"} for sample, _ in images.unread]}
    return images, described


def _features(spec, image_size: int, weights, samples, config: AuditConfig, events: Events):
    """The pooled features of the frozen backbone, seeded as `extract` seeds it (so random
    weights give the same features each time)."""
    from tlcli.models.build import build_feature_extractor
    from tlcli.models.features import extract_features
    from tlcli.runtime import set_seed

    set_seed(config.seed)
    extractor = build_feature_extractor(spec, image_size, weights, POOLING)
    with events.counting(f"Extracting ({spec.name} at {image_size}px)", len(samples), rate="images") as advance:
        features = extract_features(extractor, samples, image_size, config.batch_size, advance=advance)
    if not len(features.indices):
        raise TlcliError(f"None of the {len(samples)} image(s) in {config.data} could be decoded. "
                         "Check the files with `tlcli inspect`.")
    return features


def _source(root: Location) -> Location | None:
    """A pack's source folder, which its images' paths are named from; None for any other dataset."""
    from tlcli.data.packed import is_packed, read_pack

    return location(read_pack(root).index["source"]["data"]) if is_packed(root) else None


def run_sections(images: AuditedImages, seed: int, events: Events) -> Findings:
    """The three sections on the images' features: one neighbour search for near-duplicates
    and outliers, and the cross-validated head for the labels."""
    from tlcli.audit.duplicates import find_duplicates
    from tlcli.audit.label_errors import find_label_errors
    from tlcli.audit.neighbours import nearest_neighbours
    from tlcli.audit.outliers import find_outliers

    with events.counting("Searching nearest neighbours", None):
        neighbours = nearest_neighbours(images.features)
    findings = Findings(images, None, find_duplicates(neighbours, images.splits), find_outliers(neighbours))
    findings.seconds["neighbours"] = neighbours.seconds  # the outlier section's exact re-searches included
    findings.neighbour_search = {"method": neighbours.search, "searched_again_exactly": neighbours.repaired}
    if images.multi_label:
        findings.notes.append("the label check reads single-label data only: with --multi-label no label is "
                              "checked; the near-duplicate and outlier sections still run")
    else:
        started = time.perf_counter()
        with events.counting("Cross-validating the labels", None):
            findings.label_errors, notes = find_label_errors(images.features, images.labels, images.class_names, seed)
        findings.notes.extend(notes)
        findings.seconds["label_errors"] = time.perf_counter() - started
    for note in findings.notes:
        events.note(f"Note: {note}.")
    return findings
