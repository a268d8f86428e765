"""`tlcli evaluate`: which images to evaluate on, the model's predictions, the report files.

DATA is a dataset root (its test/ split, else val/) or a folder of class folders. Its class
folders are matched to the model's labels by name: a subset is fine, an unknown class is not.
With test-time augmentation the report's numbers are those of the probabilities averaged over
the views, and the single view's (the image as it is, from the same forward pass) go beside them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tlcli.data.dataset import (
    Sample,
    count_files,
    discover,
    encoded_images,
    packed_dataset,
    scan,
    split_folder,
    split_of,
)
from tlcli.data.images import Problem, decode_rgb, encoded_size
from tlcli.data.labels import LabelFile, LabelFileFields
from tlcli.data.packed import is_packed
from tlcli.distribute.placement import DistributionFields, Placement, place
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.inference.heatmaps import DISPLAY_SIDE, METHODS, Panel, explanations_png
from tlcli.inference.metrics import (
    GATE_METRICS,
    MULTI_LABEL_GATES,
    SINGLE_LABEL_GATES,
    ZERO_DIVISION_NOTE,
    calibration_png,
    classification_report_text,
    compute_metrics,
    compute_multi_label_metrics,
    confusion_matrix_png,
    default_top_k,
    headline_metrics,
    misclassified_rows,
    multi_label_report_text,
    multi_label_summary_rows,
    normalise_rows,
    per_image_losses,
    rows_to_csv,
    summary_rows,
    worst_losses_png,
    zero_division_classes,
)
from tlcli.models.saved import load_placed_model
from tlcli.models.tta import VIEW_SETS
from tlcli.runs.atomic import signed_by_tlcli, write_atomic
from tlcli.runs.directory import read_run
from tlcli.runs.locks import locks_outputs
from tlcli.report.report import evaluation_page
from tlcli.runs.names import (
    CALIBRATION,
    CONFUSION_MATRIX,
    EVALUATION,
    MISCLASSIFIED,
    REPORT_PAGE,
    WORST_EXPLAINED,
    WORST_LOSSES,
)
from tlcli.runs.outputs import (
    check_writable_folder,
    claim_output,
    finish_output_dir,
    output_kind,
    record_files,
    start_output_dir,
)
from tlcli.runs.staging import staged_output
from tlcli.storage import Location, location

CLASSIFICATION_REPORT = "classification_report.txt"
MISCLASSIFIED_FIELDS = ("path", "true", "predicted", "confidence", "true_probability")
WORST_LOSS_IMAGES = 16


@dataclass(frozen=True)
class EvaluateConfig(LabelFileFields, DistributionFields):
    """What `tlcli evaluate` is asked: a model, the images to score it on, and what to report."""

    model: Path
    data: Path
    top_k: int | None = None  # None: top-5 accuracy when there are more than 5 classes
    out: Path | None = None  # a folder of its own for the reports; None: the model's folder
    overwrite: bool = False
    fail_under: tuple[str, ...] = ()  # METRIC=VALUE gates: the evaluation fails below them
    explain: int = 0  # maps of this many worst losses
    explain_method: str = "auto"  # how: one of tlcli.inference.explain.METHODS
    tta: str | None = None  # a view set of tlcli.models.tta
    batch_size: int = 32
    report: bool = True  # also write report.html, the one-page report (tlcli.report)

    def __post_init__(self):
        self.gates()  # a --fail-under that is not METRIC=VALUE is refused here, and so on
        if self.explain_method not in METHODS:
            raise TlcliError(f"--explain-method {self.explain_method}: not a method tlcli has. Use --explain-method "
                             f"{', '.join(METHODS[:-1])} or {METHODS[-1]}.")
        self.label_file()
        self.distribution()

    def gates(self) -> dict[str, float]:
        return parse_thresholds(self.fail_under)


@dataclass
class EvaluateResult:
    """What `evaluate` found: the report (as evaluation.json holds it) with its headline numbers
    formatted, and the report files the chief wrote (None on the other workers of a cluster)."""

    report: dict
    summary: list[tuple[str, str]]  # (metric, value) of the headline numbers
    single_view_summary: dict[str, str] | None  # with test-time augmentation: the single view's
    gates: dict[str, float]  # --fail-under
    placement: Placement
    reports: Location | None = None  # where the report files went
    written: list[Location] | None = None

    def failures(self) -> list[str]:
        """A line for each --fail-under metric below its minimum. A gate on a metric that this
        data leaves undefined is an error, raised here, once the report is shown and written."""
        return failed_thresholds(self.report, self.gates)

    @property
    def page(self) -> Location | None:
        """The report page written (report.html), if one was."""
        return next((path for path in self.written or () if path.name == REPORT_PAGE), None)


def evaluate(config: EvaluateConfig, events: Events = SILENT) -> EvaluateResult:
    """`tlcli evaluate`: check the images, predict them (shared among the placement's replicas
    and workers), compute the metrics and, on the chief, write the reports (their place claimed
    before any model is loaded). Where it runs and how far it has got is told to `events`."""
    gates = config.gates()
    label_file = evaluation_labels(config.model, config.data, config.label_file())
    folder, description = find_evaluation_folder(config.data, label_file)
    placement = place(config.distribution(), config.data)  # before any model: multi-worker needs it so
    # Only the chief writes: the other workers of a cluster (on this machine too) claim nothing.
    reports = claim_reports(config.model, config.out, overwrite=config.overwrite,
                            data=(config.data, label_file and label_file.path.parent)) if placement.is_chief else None
    model, info = load_placed_model(config.model, placement)
    if info.multi_label and config.explain:
        raise TlcliError("--explain does not yet work with a multi-label run. Evaluate without --explain.")
    top_k = None if info.multi_label else resolve_top_k(config.top_k, len(info.class_names))
    check_thresholds_apply(gates, len(info.class_names), top_k, info.multi_label)
    events.note(f"Evaluating {info.model_location} on {description}.")
    if config.tta is not None:
        events.note(f"Test-time augmentation: on ({VIEW_SETS[config.tta].describe()}); "
                    "the single view's numbers are shown beside.")
    events.placed(placement, config.batch_size)
    selection = select_samples(folder, info.class_names, description, events, labels=label_file)
    evaluation = evaluate_model(model, info.class_names, info.image_size, selection, info.model_location, top_k,
                                config.batch_size, events, placement, config.tta,
                                thresholds=info.thresholds() if info.multi_label else None)
    changed = label_file.changed_since(info.config) if label_file is not None else None
    if changed:  # scored against labels that are not the ones the run learnt
        evaluation.notes.append(changed)
    if config.explain and placement.is_chief:
        with events.counting("Explaining the worst losses", None):
            explain_worst(model, evaluation, config.explain, info.image_size, config.explain_method)
    report = evaluation.to_dict()
    result = EvaluateResult(
        report, multi_label_summary_rows(report) if evaluation.multi_label else summary_rows(report),
        dict(summary_rows(evaluation.tta["single_view"])) if evaluation.tta else None, gates, placement)
    if placement.is_chief:
        result.reports, result.written = reports.path, write_reports(evaluation, reports, page=config.report)
    return result


@dataclass(frozen=True)
class EvaluationData:
    """Checked images to evaluate on, labelled with the model's label indices."""

    folder: Path
    description: str
    samples: tuple[Sample, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]


def find_evaluation_folder(data: Path, labels: LabelFile | None = None) -> tuple[Path, str]:
    """The folder of class folders to evaluate on, and how it was chosen (for the user); with a
    label file, DATA itself (select_samples takes the file's test rows, else val, else all)."""
    data = location(data)
    if is_packed(data):
        return data, f"the {_packed_split(packed_dataset(data, labels))} split of the packed dataset {data}"
    if labels is not None:
        found = discover(data, labels)
        split = evaluation_split(found)
        rows = f"the {split} rows" if split != "all" else "every row"
        return data, f"{rows} of {labels.path.name} (images in {data})"
    if discover(data).layout == "splits":
        for split in ("test", "val"):
            folder = split_folder(data, split)
            if folder is not None:
                return folder, f"the {folder.name}/ split of {data}"
        raise TlcliError(
            f"{data} has no test/ or val/ split to evaluate on (only train/). Add a test/ folder "
            f"of held-out images, or pass a folder of class folders such as {data / 'train'}."
        )
    split = split_of(data)
    if split == "train":
        return data, f"{data}, a training split (a model scores best on the images it learnt from)"
    if split is not None:
        return data, f"{data}, a {split} split folder"
    return data, (
        f"every image in {data}, a folder of class folders "
        "(if the model was trained on it, this includes its training images)"
    )


def evaluation_labels(model: Path, data: Path, given: LabelFile | None) -> LabelFile | None:
    """The label file to evaluate with: --labels, else the run's own when DATA is the run's
    dataset (as training read it), else none (class folders). A multi-label run reads --labels
    as multi-label, with its own delimiter."""
    config = read_run(model).config
    if given is not None:
        if config.get("multi_label"):
            return dataclasses.replace(given, multi_label=True, delimiter=config.get("label_delimiter") or " ")
        return given
    recorded = config.get("data")
    if config.get("labels") and recorded and location(data).resolve() == location(recorded).resolve():
        return LabelFile.recorded(config)
    if config.get("multi_label"):
        raise TlcliError(f"{model} is a multi-label run, and class folders cannot give an image several labels. "
                         "Pass --labels FILE.csv with the images' labels, or the run's own dataset as DATA.")
    return None


def _packed_split(dataset) -> str:
    split = next((name for name in ("test", "val") if dataset.splits.get(name)), None)
    if split is None:
        raise TlcliError(f"The packed dataset {dataset.root} has no test or val split to evaluate on (only train). "
                         "Pack it again with --test-split or --val-split.")
    return split


def _packed_samples(folder: Path, class_names: Sequence[str], description: str) -> EvaluationData:
    """A packed dataset's test split (else val), labelled with the model's class indices."""
    dataset = packed_dataset(folder)
    unknown = sorted(set(dataset.class_names) - set(class_names))
    if unknown:
        raise TlcliError(f"Class(es) {', '.join(unknown)} of the packed dataset {folder} are not classes of the model "
                         f"({', '.join(class_names)}). Evaluate on a dataset of the model's classes.")
    label_of = {name: index for index, name in enumerate(class_names)}
    samples = tuple(dataclasses.replace(sample, label=label_of[dataset.class_names[sample.label]])
                    for sample in dataset.split(_packed_split(dataset)))
    return EvaluationData(location(folder), description or str(folder), samples, dataset.problems, ())


def evaluation_split(found) -> str:
    """The split a label file's rows are evaluated on: test, else val, else "all" (no split column)."""
    if found.layout == "flat":
        return "all"
    if found.label_sets is not None:  # multi-label: rows with none of the labels count too
        split = next((name for name in ("test", "val") if found.label_sets.get(name)), None)
    else:
        split = next((name for name in ("test", "val") if any(found.files.get(name, {}).values())), None)
    if split is None:
        raise TlcliError(
            f"{found.labels.path} has no test or val rows to evaluate on (only train). Mark held-out rows "
            "with split test, or evaluate with a label file of held-out images."
        )
    return split


def select_samples(
    folder: Path,
    class_names: Sequence[str],
    description: str = "",
    events: Events = SILENT,
    labels: LabelFile | None = None,
) -> EvaluationData:
    """Check the images under `folder` (or the label file's evaluation rows), counted through
    `events`, and label them with the model's class indices."""
    if is_packed(folder):
        return _packed_samples(folder, class_names, description)
    with events.counting("Checking images", count_files(discover(folder, labels))) as advance:
        found = scan(folder, advance, labels)
    if labels is None and found.layout != "flat":
        raise TlcliError(
            f"{folder} holds split folders; pass the dataset root or one split folder of class folders."
        )
    split = evaluation_split(found) if labels is not None else "all"
    if found.label_sets is not None:
        return _multi_label_samples(found, split, class_names, description or str(folder))
    per_class = found.files[split]
    label_of = {name: index for index, name in enumerate(class_names)}
    unknown = sorted(set(per_class) - set(label_of))
    if unknown:
        raise TlcliError(
            f"Class folder(s) {', '.join(unknown)} in {folder} are not classes of the model "
            f"({', '.join(class_names)}). Name class folders as in the model's labels.txt, "
            "or remove the others."
        )
    samples = sorted(
        (
            Sample(path, label_of[name], found.checked[path].needs_pil)
            for name in per_class
            for path in found.good_files(split, name)
        ),
        key=lambda sample: str(sample.path),
    )
    if not samples:
        raise TlcliError(f"{folder} has no usable images in its class folders. Add images to evaluate on.")
    notes = []
    present = {sample.label for sample in samples}
    missing = [name for index, name in enumerate(class_names) if index not in present]
    if missing:
        notes.append(
            f"the data has images of {len(present)} of the model's {len(class_names)} classes "
            f"(none of: {', '.join(missing)}); per-class numbers cover the classes present or "
            "predicted, and ROC-AUC averages over the classes present"
        )
    return EvaluationData(location(folder), description or str(folder), tuple(samples),
                          tuple(found.problems), tuple(notes))


def _multi_label_samples(found, split: str, class_names: Sequence[str], description: str) -> EvaluationData:
    """A multi-label label file's evaluation rows, with targets in the model's label order."""
    from tlcli.data.images import ImageInfo

    images = found.label_sets.get(split, {})
    unknown = sorted({name for names in images.values() for name in names} - set(class_names))
    if unknown:
        raise TlcliError(
            f"Label(s) {', '.join(unknown)} in {found.labels.path} are not labels of the model "
            f"({', '.join(class_names)}). Evaluate on rows with the model's labels only."
        )
    samples = tuple(Sample(path, -1, found.checked[path].needs_pil, tuple(int(name in names) for name in class_names))
                    for path, names in sorted(images.items(), key=lambda item: str(item[0]))
                    if isinstance(found.checked.get(path), ImageInfo))
    if not samples:
        raise TlcliError(f"{found.labels.path} lists no usable images to evaluate on. Add held-out rows.")
    return EvaluationData(found.root, description, samples, tuple(found.problems), ())


def resolve_top_k(top_k: int | None, num_classes: int) -> int | None:
    if top_k is None:
        return default_top_k(num_classes)
    if not 1 <= top_k < num_classes:
        raise TlcliError(
            f"--top-k {top_k} does not fit a model with {num_classes} classes. "
            f"Use a value from 1 to {num_classes - 1}."
        )
    return top_k


def parse_thresholds(specs: Sequence[str]) -> dict[str, float]:
    """`--fail-under METRIC=VALUE` options as {metric: minimum}."""
    thresholds = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        name = name.strip().lower().replace("-", "_")
        try:
            minimum = float(value)
        except ValueError:
            minimum = None
        if name not in GATE_METRICS or minimum is None:
            raise TlcliError(
                f"--fail-under {spec!r} is not METRIC=VALUE with a known metric. "
                f"Use e.g. accuracy=0.9; metrics: {', '.join(GATE_METRICS)}."
            )
        thresholds[name] = minimum
    return thresholds


def check_thresholds_apply(thresholds: dict[str, float], num_classes: int, top_k: int | None,
                           multi_label: bool = False) -> None:
    """Refuse, before any work, a gate on a metric that will not be computed."""
    kind, gates = ("multi-label", MULTI_LABEL_GATES) if multi_label else ("single-label", SINGLE_LABEL_GATES)
    for name in thresholds:
        if name not in gates:
            raise TlcliError(
                f"--fail-under {name} is not computed for a {kind} run. Gate on one of: {', '.join(gates)}."
            )
    if "top_k_accuracy" in thresholds and top_k is None:
        raise TlcliError(
            f"--fail-under top_k_accuracy needs --top-k (the model has {num_classes} classes, so "
            "top-k accuracy is not computed by default). Add --top-k K."
        )
    if "pr_auc" in thresholds and num_classes != 2:
        raise TlcliError(
            f"--fail-under pr_auc applies to two-class models; this one has {num_classes} classes. "
            "Gate on roc_auc or f1_macro instead."
        )


def failed_thresholds(metrics: dict, thresholds: dict[str, float]) -> list[str]:
    """A line for each metric below its minimum."""
    failures = []
    for name, minimum in thresholds.items():
        value = metrics.get(name)
        if value is None:
            raise TlcliError(
                f"--fail-under {name}: {name} is undefined for this data (it needs images of at "
                "least two classes). Evaluate on data with more classes, or gate on accuracy."
            )
        if value < minimum:
            failures.append(f"{name} {value:.4f} is below --fail-under {name}={minimum:g}")
    return failures


@dataclass
class Evaluation:
    model_path: Location  # where the model is (a URL for a run read from one)
    data: EvaluationData
    class_names: tuple[str, ...]  # the model's
    paths: list[Path]
    y_true: np.ndarray
    probabilities: np.ndarray
    metrics: dict
    problems: list[Problem]
    distribution: dict | None = None  # where it ran (see distribute.Placement.describe)
    explained: list[ExplainedImage] = field(default_factory=list)  # with --explain N: the worst losses
    tta: dict | None = None  # test-time augmentation's views and the single view's numbers (see tta_report)
    notes: list[str] = field(default_factory=list)  # what the evaluation itself adds to the data's notes

    @property
    def multi_label(self) -> bool:
        return self.y_true.ndim == 2

    def decisions(self) -> np.ndarray:
        """Multi-label: 0/1 per image and label, each probability against its label's threshold."""
        cut = np.array([self.metrics["thresholds"][name] for name in self.class_names])
        return (self.probabilities >= cut).astype(int)

    def wrong(self) -> np.ndarray:
        """Whether each image is misclassified (multi-label: any of its labels decided wrongly)."""
        if self.multi_label:
            return np.any(self.decisions() != self.y_true, axis=1)
        return self.probabilities.argmax(axis=1) != self.y_true

    def to_dict(self) -> dict:
        return {
            "model": str(self.model_path),
            "data": str(self.data.folder),
            "data_description": self.data.description,
            **({"distribution": self.distribution} if self.distribution else {}),
            **self.metrics,
            **({"tta": self.tta} if self.tta else {}),
            "misclassified": int(np.sum(self.wrong())),
            "skipped": [{"path": str(p.path), "reason": p.reason} for p in self.problems],
            "notes": [*self.data.notes, *self.notes,
                      *([ZERO_DIVISION_NOTE] if zero_division_classes(self.metrics) else [])],
            **({"explained": [image.record for image in self.explained]} if self.explained else {}),
        }

    def worst(self, count: int) -> np.ndarray:
        """Positions of the `count` images with the highest loss, highest first."""
        return np.argsort(-per_image_losses(self.y_true, self.probabilities), kind="stable")[:count]


@dataclass(frozen=True)
class ExplainedImage:
    """A worst-loss image with maps of its predicted and its true class."""

    path: Path
    panels: tuple[Panel, ...]
    record: dict
    encoded: bytes  # the image as read for its maps (a packed one from its shards)


def explain_worst(model, evaluation: Evaluation, count: int, image_size: int, method: str = "auto",
                  batch_size: int = 16) -> None:
    """Give the `count` worst-loss images of `evaluation` (at most SHEET_IMAGES, as explain's
    contact sheet: a picture of more is too tall to open) maps of their predicted and true class,
    by `method` as `tlcli explain` draws them, each with its deletion test."""
    from tlcli.inference.explain import PREDICTED, SHEET_IMAGES, TRUE, Explainer, caption, explain_samples

    if count > SHEET_IMAGES:
        evaluation.notes.append(f"--explain {count}: {WORST_EXPLAINED} shows the {SHEET_IMAGES} worst losses, "
                                "its most (`tlcli explain` draws a picture per image for more)")
        count = SHEET_IMAGES

    names = evaluation.class_names
    losses = per_image_losses(evaluation.y_true, evaluation.probabilities)
    by_path = {sample.path: sample for sample in evaluation.data.samples}
    positions = evaluation.worst(count)
    samples = [by_path[evaluation.paths[position]] for position in positions]
    encoded = encoded_images(samples)
    explainer = Explainer(model, image_size, method=method, batch_size=batch_size)
    for index, _, (predicted, true), (predicted_test, true_test) in explain_samples(
            explainer, samples, image_size, [PREDICTED, TRUE], batch_size):
        path, loss = samples[index].path, float(losses[positions[index]])
        if encoded[index] is None:
            continue  # the file went away after it was predicted
        size = encoded_size(encoded[index])
        maps = [("predicted", predicted, predicted_test)] + (
            [("true", true, true_test)] if true.class_index != predicted.class_index else [])
        panels = tuple(Panel(caption(f"{role} {names[heatmap.class_index]}", heatmap, test), heatmap.values,
                             heatmap.peak(*size), size) for role, heatmap, test in maps)
        record = {
            "path": str(path), "true": names[true.class_index], "predicted": names[predicted.class_index],
            "loss": loss, "method": explainer.method, "peak_predicted": predicted.peak(*size),
            "peak_true": true.peak(*size), "faithfulness_predicted": predicted_test.record()["faithfulness"],
            "faithfulness_true": true_test.record()["faithfulness"],
        }
        evaluation.explained.append(ExplainedImage(path, panels, record, encoded[index]))
    if explainer.method is not None and not explainer.reason.startswith("--"):
        evaluation.notes.append(f"--explain {count}: {explainer.reason}")


def evaluate_model(
    model,
    class_names: Sequence[str],
    image_size: int,
    data: EvaluationData,
    model_path: Location,
    top_k: int | None = None,
    batch_size: int = 32,
    events: Events = SILENT,
    placement=None,
    tta: str | None = None,
    thresholds: dict[str, float] | None = None,
) -> Evaluation:
    """Predict every image of `data` (shared among the placement's replicas, counted through
    `events`) and compute the metrics.

    With a `tta` view set, the metrics are those of the probabilities averaged over the views,
    and `Evaluation.tta` holds the single view's from the same forward pass. Multi-label data
    (samples with targets) is decided with the per-label `thresholds`.
    """
    multi_label = bool(data.samples) and data.samples[0].targets is not None
    if multi_label and tta is not None:
        raise TlcliError("--tta does not yet work with a multi-label run. Evaluate without --tta.")
    from tlcli.data.pipeline import DECODE_FAILED
    from tlcli.inference.predict import predict_samples
    from tlcli.models.tta import MultiViewClassifier

    predictor = model if tta is None else MultiViewClassifier(model, tta, average=False)
    with events.counting("Predicting", len(data.samples)) as advance:
        indices, outputs = predict_samples(predictor, data.samples, image_size, batch_size, advance, placement)
    read = set(indices.tolist())
    problems = list(data.problems) + [
        Problem(sample.path, DECODE_FAILED) for i, sample in enumerate(data.samples) if i not in read
    ]
    if not len(indices):
        raise TlcliError(f"None of the images in {data.folder} could be read. Check them with `tlcli inspect`.")
    if multi_label:
        y_true = np.array([data.samples[i].targets for i in indices], dtype=int)
        return Evaluation(
            model_path=model_path, data=data, class_names=tuple(class_names),
            paths=[data.samples[i].path for i in indices], y_true=y_true,
            probabilities=np.asarray(outputs, np.float64),
            metrics=compute_multi_label_metrics(y_true, outputs, class_names, thresholds or {}), problems=problems,
            distribution=placement.describe() if placement is not None else None,
        )
    y_true = np.array([data.samples[i].label for i in indices], dtype=int)
    probabilities = outputs if tta is None else outputs.mean(axis=1)
    metrics = compute_metrics(y_true, probabilities, class_names, top_k)
    return Evaluation(
        model_path=model_path,
        data=data,
        class_names=tuple(class_names),
        paths=[data.samples[i].path for i in indices],
        y_true=y_true,
        probabilities=normalise_rows(probabilities),
        metrics=metrics,
        problems=problems,
        distribution=placement.describe() if placement is not None else None,
        tta=tta_report(tta, y_true, outputs, class_names, top_k) if tta is not None else None,
    )


def tta_report(view_set: str, y_true: np.ndarray, per_view: np.ndarray, class_names: Sequence[str],
               top_k: int | None) -> dict:
    """What test-time augmentation did: its views, the headline numbers of view 0 alone (the
    image as it is, what evaluate gives without --tta) and each view's accuracy on its own."""
    views = VIEW_SETS[view_set]
    single = compute_metrics(y_true, per_view[:, 0], class_names, top_k)
    return {
        "views": view_set,
        "count": len(views.views),
        "description": views.meaning,
        "single_view": headline_metrics(single),
        "accuracy_per_view": {
            view.name: float(np.mean(per_view[:, number].argmax(axis=1) == y_true))
            for number, view in enumerate(views.views)
        },
    }


def report_contents(evaluation: Evaluation) -> dict[str, str | bytes]:
    """Every report file's name and content, rendered before any is written."""
    if evaluation.multi_label:
        return multi_label_report_contents(evaluation)
    names = evaluation.class_names
    y_true, probabilities = evaluation.y_true, evaluation.probabilities
    misclassified = misclassified_rows(evaluation.paths, y_true, probabilities, names)
    losses = per_image_losses(y_true, probabilities)
    worst = [
        {
            "path": evaluation.paths[i],
            "true": names[y_true[i]],
            "predicted": names[probabilities[i].argmax()],
            "confidence": float(probabilities[i].max()),
            "loss": float(losses[i]),
        }
        for i in evaluation.worst(WORST_LOSS_IMAGES)
    ]
    by_path = {sample.path: sample for sample in evaluation.data.samples}
    for item, image in zip(worst, encoded_images([by_path[item["path"]] for item in worst])):
        item["image"] = image
    explained = {}
    if evaluation.explained:
        rows = [(decode_rgb(image.encoded, least_side=DISPLAY_SIDE), image.path.name, image.panels)
                for image in evaluation.explained]
        explained[WORST_EXPLAINED] = explanations_png(rows)
    return {
        EVALUATION: json.dumps(evaluation.to_dict(), indent=2) + "\n",
        CLASSIFICATION_REPORT: classification_report_text(y_true, probabilities, names, evaluation.metrics,
                                                          evaluation.tta),
        CONFUSION_MATRIX: confusion_matrix_png(evaluation.metrics["confusion_matrix"], evaluation.metrics["classes"]),
        MISCLASSIFIED: rows_to_csv(misclassified, MISCLASSIFIED_FIELDS),
        WORST_LOSSES: worst_losses_png(worst),
        CALIBRATION: calibration_png(evaluation.metrics),
        **explained,
    }


def multi_label_report_contents(evaluation: Evaluation) -> dict[str, str | bytes]:
    """A multi-label evaluation's reports: evaluation.json, the per-label report, and the images
    with any label decided wrongly (their true and decided labels, and every probability)."""
    names, decisions = evaluation.class_names, evaluation.decisions()
    rows = [
        {"path": str(path), "true": " ".join(n for n, t in zip(names, truth) if t),
         "predicted": " ".join(n for n, d in zip(names, decided) if d),
         "probabilities": " ".join(f"{n}={p:.4f}" for n, p in zip(names, probabilities))}
        for path, truth, decided, probabilities in zip(evaluation.paths, evaluation.y_true, decisions,
                                                       evaluation.probabilities)
        if np.any(truth != decided)
    ]
    return {
        EVALUATION: json.dumps(evaluation.to_dict(), indent=2) + "\n",
        CLASSIFICATION_REPORT: multi_label_report_text(evaluation.metrics),
        MISCLASSIFIED: rows_to_csv(rows, ("path", "true", "predicted", "probabilities")),
    }


REPORT_NAMES = (EVALUATION, CLASSIFICATION_REPORT, CONFUSION_MATRIX, CALIBRATION, MISCLASSIFIED, WORST_LOSSES,
                WORST_EXPLAINED, REPORT_PAGE)


def evaluated_images(evaluation: Evaluation):
    """The encoded images of the evaluated samples, by path (a packed one's from its shards), for
    the report's thumbnails; None for a path that is not one of them."""
    by_path = {str(sample.path): sample for sample in evaluation.data.samples}

    def images(paths: Sequence[str]) -> list[bytes | None]:
        known = [by_path.get(str(path)) for path in paths]
        found = iter(encoded_images([sample for sample in known if sample is not None]))
        return [next(found) if sample is not None else None for sample in known]

    return images


@dataclass(frozen=True)
class ReportsFolder:
    """Where evaluate writes: a folder of its own (--out), or its report files in the model's run."""

    path: Location
    own: bool


@locks_outputs
def claim_reports(model: Location, out_dir: Location | None, *, overwrite: bool = False,
                  data: tuple = ()) -> ReportsFolder:
    """Check where the reports go, through the output policy (runs.outputs), before any model is
    loaded: --out is an evaluation folder of its own (new, empty, or an earlier one with
    --overwrite); without it, the report files go into the model's run or export folder."""
    if out_dir is not None:
        claim_output(out_dir, "evaluation", overwrite=overwrite, data=(*data, *read_run(model).dataset_places),
                     sources={location(model): "the model being evaluated"})
        return ReportsFolder(location(out_dir), own=True)
    folder = read_run(model).path
    if output_kind(folder) not in ("run", "export"):
        raise TlcliError(
            f"{folder} is not a run or export folder that tlcli made, so evaluate does not write its reports there. "
            "Name a folder for them with --out."
        )
    check_writable_folder(folder, f"The run directory {folder} (reports go there without --out)")
    return ReportsFolder(folder, own=False)


@locks_outputs
def write_reports(evaluation: Evaluation, reports: ReportsFolder, page: bool = True) -> list[Location]:
    """Write the reports (and with `page`, the one-page report.html of them and the run): into an
    evaluation folder of its own (keeping any file tlcli did not write there), or as evaluate's
    own files in the model's folder."""
    contents = report_contents(evaluation)
    if page:
        contents[REPORT_PAGE] = evaluation_page(evaluation.model_path, contents, reports.path,
                                                evaluated_images(evaluation))
    if not reports.own:
        if WORST_EXPLAINED not in contents:  # an earlier evaluate's, about other predictions
            (reports.path / WORST_EXPLAINED).unlink(missing_ok=True)
        if REPORT_PAGE not in contents and signed_by_tlcli(reports.path / REPORT_PAGE):  # the same, with --no-report
            (reports.path / REPORT_PAGE).unlink()
        for name, content in contents.items():
            write_atomic(reports.path / name, content)
        record_files(reports.path, contents)
        return [reports.path / name for name in contents]
    with staged_output(reports.path, "evaluation", overwrite=True) as staged:
        claim_output(staged.local, "evaluation", overwrite=True)
        start_output_dir(staged.local, "evaluation")
        for name, content in contents.items():
            write_atomic(staged.local / name, content)
        finish_output_dir(staged.local)
    return [reports.path / name for name in contents]
