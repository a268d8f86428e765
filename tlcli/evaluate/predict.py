"""Running a saved model over images: class probabilities, batch by batch, in file order.

Images go through the same pipeline as training (decode, RGB, resize), never randomly augmented,
so an image always gets the same probabilities; test-time augmentation (`tta`, a view set of
`tlcli.models.tta`) averages those of a few fixed views of it. Only probabilities are kept, never decoded images,
so memory stays flat however many files there are.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tlcli.data.dataset import Sample, image_files_below
from tlcli.data.images import ImageInfo, Problem, check_images, is_image_name
from tlcli.data.pipeline import DECODE_FAILED
from tlcli.errors import TlcliError
from tlcli.storage import Location, Url, glob_urls, location

_GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Prediction:
    path: Path
    probabilities: np.ndarray  # one per class, in label order


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
    on_predicted: Callable[[int], None] | None = None,
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
        if on_predicted is not None:
            on_predicted(len(indices))
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
