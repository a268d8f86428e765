"""Running a saved model over images: class probabilities, batch by batch, in file order.

Images go through the same pipeline as training (decode, RGB, resize), never randomly augmented,
so an image always gets the same probabilities; test-time augmentation (`tta`, a view set of
`tlcli.models.tta`) averages those of a few fixed views of it. Only probabilities are kept, never decoded images,
so memory stays flat however many files there are.
"""

from __future__ import annotations

import functools
import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tlcli.data.dataset import Sample, image_files_below
from tlcli.data.images import ImageInfo, Problem, check_images, is_image_name
from tlcli.data.pipeline import DECODE_FAILED
from tlcli.distribute.placement import DistributionFields, Placement, place
from tlcli.errors import TlcliError
from tlcli.events import DETAIL, SILENT, Events
from tlcli.storage import Location, Url, glob_urls, location

_GLOB_CHARACTERS = set("*?[")
DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class PredictConfig(DistributionFields):
    """What `tlcli predict` is asked: a model, and the images to classify."""

    model: Path
    paths: tuple[str, ...]  # image files, folders and globs
    top_k: int | None = None  # classes per image, most probable first; None: not asked, DEFAULT_TOP_K
    tta: str | None = None  # a view set of tlcli.models.tta
    batch_size: int = 32

    def __post_init__(self):
        self.distribution()


@dataclass(frozen=True)
class Prediction:
    path: Path
    probabilities: np.ndarray  # one per class, in label order


@dataclass
class Predictions:
    """What `predict` gives: the fields of each image's row, then, as they are iterated, the rows
    themselves, each as soon as its image is predicted (so that output flows on a huge folder).
    A file that cannot be read is told to the events as skipped; both are counted."""

    fields: list[str]
    multi_label: bool  # rows of the labels over their thresholds, not of ranked classes
    placement: Placement  # every worker predicts its share; only the chief should write the rows
    files: int
    results: Iterator[Prediction | Problem] = field(repr=False)
    row: Callable[[Prediction], dict] = field(repr=False)
    events: Events = field(default=SILENT, repr=False)
    predicted: int = 0
    skipped: int = 0

    def __iter__(self) -> Iterator[dict]:
        with self.events.counting("Predicting", self.files) as advance:
            for result in self.results:
                advance(1)
                if isinstance(result, Problem):
                    self.skipped += 1
                    self.events.skipped(result.path, result.reason)
                    continue
                self.predicted += 1
                yield self.row(result)


def predict(config: PredictConfig, events: Events = SILENT) -> Predictions:
    """`tlcli predict`: the images' rows, predicted as they are iterated: the top classes with
    their probabilities, or for a multi-label run the labels over their thresholds with every
    label's probability. Where it runs, and what the options change, is told to `events`."""
    from tlcli.models.saved import load_placed_model
    from tlcli.models.tta import VIEW_SETS

    files = collect_image_files(config.paths)
    placement = place(config.distribution(), config.paths[0])  # before any model: multi-worker needs it so
    model, info = load_placed_model(config.model, placement)
    if placement.name != "default":
        events.placed(placement, config.batch_size)
    thresholds = info.thresholds() if info.multi_label else None
    if thresholds is not None:
        if config.top_k is not None:
            events.note("Note: --top-k does not apply to a multi-label run: each image shows the labels at or over "
                        "their thresholds.", DETAIL)
        fields = ["path", "labels", *(f"probability_{name}" for name in info.class_names)]
        row = functools.partial(labels_row, class_names=info.class_names, thresholds=thresholds)
    else:
        top_k = _ranked(config.top_k, len(info.class_names), events)
        fields = ["path", "prediction", "probability"]
        for rank in range(2, top_k + 1):
            fields += [f"class_{rank}", f"probability_{rank}"]
        row = functools.partial(ranked_row, class_names=info.class_names, fields=fields)
    if config.tta is not None:
        events.note(f"Test-time augmentation: on ({VIEW_SETS[config.tta].describe()}).")
    results = predict_files(model, files, info.image_size, config.batch_size, placement=placement, tta=config.tta)
    return Predictions(fields, thresholds is not None, placement, len(files), results, row, events)


def _ranked(top_k: int | None, num_classes: int, events: Events) -> int:
    """How many classes a row ranks: --top-k (DEFAULT_TOP_K if not given), at most every class."""
    top_k = DEFAULT_TOP_K if top_k is None else top_k
    if top_k > num_classes:
        events.note(f"Note: --top-k {top_k} is more than the model's {num_classes} classes; "
                    f"showing all {num_classes}.", DETAIL)
    return min(top_k, num_classes)


def ranked_row(prediction: Prediction, class_names: Sequence[str], fields: list[str]) -> dict:
    """An image's path, then its most probable classes with their probabilities, as many as
    `fields` has room for, most probable first."""
    values = [str(prediction.path)]
    for name, probability in top_classes(prediction.probabilities, class_names, (len(fields) - 1) // 2):
        values += [name, round(probability, 6)]
    return dict(zip(fields, values))


def labels_row(prediction: Prediction, class_names: Sequence[str], thresholds: dict[str, float]) -> dict:
    """A multi-label prediction: the labels at or over their thresholds, most probable first,
    and every label's probability."""
    from tlcli.training.thresholds import decide

    probabilities = prediction.probabilities
    decided = decide(probabilities[None], thresholds, class_names)[0]
    order = sorted(range(len(class_names)), key=lambda index: -probabilities[index])
    return {"path": str(prediction.path), "labels": [class_names[index] for index in order if decided[index]],
            **{f"probability_{name}": round(float(probability), 6)
               for name, probability in zip(class_names, probabilities)}}


def predict_batches(model, samples: Sequence[Sample], image_size: int, batch_size: int, placement=None):
    """Yield (indices into `samples`, probabilities) per batch; undecodable files are absent.

    With a `placement` of several replicas or workers, each batch is shared out among them.
    `model` may be a `MultiViewClassifier`, whose rows are [views, classes] per image.
    """
    from tlcli.models.features import feature_batches

    for batch in feature_batches(model, samples, image_size, batch_size, placement):
        yield batch.indices, batch.features


def predict_samples(
    model,
    samples: Sequence[Sample],
    image_size: int,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
    placement=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the samples that were read, their probabilities), in sample order.

    The probabilities have the model's output shape per image: [classes], or [views, classes]
    for a `MultiViewClassifier` that does not average.
    """
    all_indices, all_probabilities = [], []
    for indices, probabilities in predict_batches(model, samples, image_size, batch_size, placement):
        all_indices.append(indices)
        all_probabilities.append(probabilities)
        if advance is not None:
            advance(len(indices))
    if not all_indices:
        return np.zeros(0, dtype=int), np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    return np.concatenate(all_indices), np.concatenate(all_probabilities)


def collect_image_files(arguments: Sequence[str | Path]) -> list[Path]:
    """Files as given, image files below folders (recursively, hidden ones skipped), and globs.

    A named file is kept whatever its type, so that a wrong one is reported rather than
    silently ignored. An argument that matches nothing is an error.
    """
    found: dict[Path, None] = {}
    for argument in arguments:
        path = location(argument)
        if path.is_dir():
            matches = image_files_below(path)
        elif path.exists():
            matches = [path]
        elif _GLOB_CHARACTERS & set(str(argument)):
            matches = [match for match in _glob(path) if match.is_file() and is_image_name(match)]
        else:
            matches = None
        if not matches:
            what = "matches no image files" if matches is not None else "does not exist"
            raise TlcliError(
                f"{argument} {what}. Pass image files, folders of images, or quoted globs "
                "such as 'photos/**/*.jpg'."
            )
        found.update(dict.fromkeys(matches))
    return list(found)


def _glob(pattern: Location) -> list[Location]:
    """The files a glob names: `**` crosses folders on a local disk; in object storage, through
    TensorFlow's file systems, `*` matches within one folder."""
    if isinstance(pattern, Url):
        return glob_urls(pattern)
    return [Path(match) for match in sorted(glob.glob(str(pattern), recursive=True))]


def predict_files(
    model,
    paths: Sequence[Path],
    image_size: int,
    batch_size: int,
    chunk_size: int = 512,
    placement=None,
    tta: str | None = None,
) -> Iterator[Prediction | Problem]:
    """Check and predict files chunk by chunk: a Prediction or a Problem per file, in order.

    Chunks keep memory flat and results flowing on huge folders: each chunk's files are
    checked (so a bad file is reported with its reason and skipped), then predicted. With a
    `tta` view set, each file's probabilities are the mean over its views.
    """
    if tta is not None:
        from tlcli.models.tta import MultiViewClassifier

        model = MultiViewClassifier(model, tta, average=True)
    for start in range(0, len(paths), chunk_size):
        chunk = list(paths[start : start + chunk_size])
        checked = check_images(chunk)
        samples = [
            Sample(path, 0, result.needs_pil)
            for path, result in checked.items()
            if isinstance(result, ImageInfo)
        ]
        results: dict[Path, Prediction | Problem] = {
            path: result for path, result in checked.items() if isinstance(result, Problem)
        }
        for indices, probabilities in predict_batches(model, samples, image_size, batch_size, placement):
            for index, row in zip(indices, probabilities):
                results[samples[index].path] = Prediction(samples[index].path, row)
            # Yield in file order as far as this chunk has got.
            while chunk and chunk[0] in results:
                yield results.pop(chunk.pop(0))
        for path in chunk:
            yield results.pop(path, None) or Problem(path, DECODE_FAILED)


def top_classes(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable classes, most probable first (ties in label order)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(class_names[index], float(probabilities[index])) for index in order]
