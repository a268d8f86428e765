"""`tlcli explain`: maps of where in each image a saved classifier found its evidence for a class.

The maps come from Grad-CAM (`gradcam`). This module reads the images, runs the method and
writes the pictures, the contact sheet and explain.json.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tlcli.data.dataset import Sample
from tlcli.data.images import ImageInfo, Problem, check_images, read_rgb
from tlcli.data.pipeline import DECODE_FAILED
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.evaluate.gradcam import GradCam
from tlcli.evaluate.heatmaps import (
    DISPLAY_SIDE, PREDICTED, TILE_SIDE, Heatmap, Panel, contact_sheet_png, explanation_png, fit,
)
from tlcli.evaluate.predict import collect_image_files
from tlcli.runs.directory import read_run
from tlcli.runs.atomic import write_atomic
from tlcli.runs.outputs import building, claim_output, kept_note
from tlcli.runs.locks import locks_outputs
from tlcli.runs.remote import staged_output
from tlcli.storage import location

TRUE = -2  # in place of a class index: explain the image's own label
EXPLAIN_FOLDER = "explain"  # inside the run directory, without --out
CONTACT_SHEET = "contact_sheet.png"
EXPLAIN_JSON = "explain.json"
SHEET_IMAGES = 100  # a contact sheet shows the first images; every image has its own picture


@dataclass(frozen=True)
class Explanation:
    path: Path
    width: int  # the image's own size, in pixels
    height: int
    probabilities: np.ndarray  # one per class, in label order
    heatmaps: tuple[Heatmap, ...]  # one per class asked for, in the order asked

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


def explain_samples(
    gradcam: GradCam,
    samples: Sequence[Sample],
    image_size: int,
    classes: Sequence[int],
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray, tuple[Heatmap, ...]]]:
    """(index into `samples`, probabilities, a Heatmap per entry of `classes`) per decoded image,
    in sample order. An entry of `classes` is a class index, PREDICTED or TRUE (the sample's label)."""
    from tlcli.data.pipeline import image_dataset

    for images, labels, indices in image_dataset(samples, image_size, batch_size, with_index=True):
        heatmaps = []
        for class_index in classes:
            targets = labels.numpy() if class_index == TRUE else [class_index] * len(indices)
            probabilities, maps = gradcam(images, targets)
            heatmaps.append(maps)
        for position, index in enumerate(indices.numpy()):
            yield int(index), probabilities[position], tuple(maps[position] for maps in heatmaps)


def explain_files(
    gradcam: GradCam,
    paths: Sequence[Path],
    image_size: int,
    classes: Sequence[int],
    batch_size: int,
    chunk_size: int = 256,
) -> Iterator[Explanation | Problem]:
    """Check and explain files chunk by chunk: an Explanation or a Problem per file, in file order."""
    for start in range(0, len(paths), chunk_size):
        chunk = list(paths[start : start + chunk_size])
        checked = check_images(chunk)
        samples = [Sample(path, 0, result.needs_pil) for path, result in checked.items() if isinstance(result, ImageInfo)]
        results: dict[Path, Explanation | Problem] = {
            path: result for path, result in checked.items() if isinstance(result, Problem)
        }
        for index, probabilities, heatmaps in explain_samples(gradcam, samples, image_size, classes, batch_size):
            path = samples[index].path
            results[path] = Explanation(path, checked[path].width, checked[path].height, probabilities, heatmaps)
            while chunk and chunk[0] in results:
                yield results.pop(chunk.pop(0))
        for path in chunk:
            yield results.pop(path, None) or Problem(path, DECODE_FAILED)


def class_indices(requested: Sequence[str], class_names: Sequence[str]) -> tuple[list[int], list[str]]:
    """(indices of the requested classes the model has, the names it does not have); with none
    requested, the predicted class."""
    if not requested:
        return [PREDICTED], []
    known = {name: index for index, name in enumerate(class_names)}
    found = list(dict.fromkeys(known[name] for name in requested if name in known))
    return found, [name for name in dict.fromkeys(requested) if name not in known]


@dataclass
class ExplainReport:
    out: Path
    records: list[dict] = field(default_factory=list)  # one per image and class explained
    problems: list[Problem] = field(default_factory=list)
    unknown_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    contact_sheet: Path | None = None


def picture_name(position: int, count: int, path: Path) -> str:
    """`007-cat_photo.png`: numbered in input order (two files may share a name), then the name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:60]
    return f"{position:0{len(str(count))}d}-{stem}.png"


@dataclass(frozen=True)
class ExplainConfig:
    """What `tlcli explain` is asked: a model, the images, and the classes to explain in them."""

    model: Path
    inputs: tuple[str | Path, ...]  # image files, folders and globs
    out: Path | None = None  # None: RUN_DIR/explain, refreshed
    class_names: tuple[str, ...] = ()  # none: the predicted class
    batch_size: int = 16
    overwrite: bool = False


@locks_outputs
def explain(config: ExplainConfig, events: Events = SILENT) -> ExplainReport:
    """Grad-CAM pictures of every image in `config.inputs` (files, folders, globs) for the predicted
    class, or for each of `config.class_names`: one PNG per image, a contact sheet and explain.json
    in `config.out` (default: RUN_DIR/explain, refreshed), which must be new, empty, or an earlier
    explain's folder with `overwrite`. The folder is built beside its place and swapped in whole.

    Unreadable files and classes the model lacks are told to `events` as skipped and left out;
    the rest is done, counted through `events`.
    """
    from tlcli.models.saved import load_run_model  # Keras: only once a command explains

    files = collect_image_files(config.inputs)
    info = read_run(config.model)
    classes, unknown = class_indices(config.class_names, info.class_names)
    if not classes:
        raise TlcliError(
            f"--class {', '.join(unknown)}: not a class of the model (classes: {', '.join(info.class_names)}). "
            "Name classes as in the model's labels.txt."
        )
    out = config.out
    target = location(out) if out is not None else info.path / EXPLAIN_FOLDER  # a folder, or a URL (runs.remote)
    places = {location(argument) for argument in config.inputs if location(argument).is_dir()}
    claim = dict(overwrite=config.overwrite or out is None, own={"run": (EXPLAIN_FOLDER,)},
                 data=(*places, *info.dataset_places))
    with events.counting("Explaining", len(files)) as advance, \
            staged_output(target, "explain", sources={info.model_location: "the model"}, **claim) as staged:
        claim_output(staged.local, "explain", sources={info.model_path: "the model"}, **claim)
        report = ExplainReport(staged.target, unknown_classes=unknown)
        keras_model, info = load_run_model(config.model)
        gradcam = GradCam(keras_model)
        for name in unknown:
            events.skipped(f"--class {name}", "not a class of the model; explaining the others")
        with building(staged.local, "explain") as built:
            _explain_into(report, gradcam, files, info, classes, config.batch_size, events, advance,
                          written=built, public=lambda name: staged.public(staged.local / name))
        kept = kept_note(staged.local)
    if kept:
        report.notes.append(kept.replace(str(staged.local), str(staged.target)))
    return report


def _explain_into(report: ExplainReport, gradcam: GradCam, files, info, classes, batch_size: int, events: Events,
                  advance: Callable[[int], None], *, written: Path, public: Callable[[str], Path]) -> None:
    """explain's work: the pictures, contact sheet and explain.json written into the folder
    `written`, recorded in `report` by their names once published (`public`), each file counted
    with `advance`. Refused, and nothing published, when no image could be read."""
    tiles = []
    position = {path: number for number, path in enumerate(files, start=1)}
    for result in explain_files(gradcam, files, info.image_size, classes, batch_size):
        if isinstance(result, Problem):
            report.problems.append(result)
            events.skipped(result.path, result.reason)
        else:
            picture = picture_name(position[result.path], len(files), result.path)
            panels = _write_picture(result, info.class_names, written / picture)
            report.records.extend(_records(result, info.class_names, public(picture)))
            if len(tiles) < SHEET_IMAGES and panels:
                tiles.append((_thumbnail(result.path), panels[0], result.path.name))
        advance(1)
    if not report.records:
        raise TlcliError(f"None of the {len(files)} file(s) could be read as an image. Check the paths.")

    grid = report.records[0]["grid"] if report.records else None
    if grid == [1, 1]:
        report.notes.append(
            f"{gradcam.backbone.display_name}'s last block ({gradcam.layer_name}) is a single cell at "
            f"--image-size {info.image_size}, so the maps cannot say where: train at a larger --image-size for a map"
        )
    if len(files) - len(report.problems) > SHEET_IMAGES:
        report.notes.append(f"the contact sheet shows the first {SHEET_IMAGES} images; each image has its own picture")
    if tiles:
        write_atomic(written / CONTACT_SHEET, contact_sheet_png(tiles))
        report.contact_sheet = public(CONTACT_SHEET)
    write_atomic(written / EXPLAIN_JSON, json.dumps({
        "model": str(info.model_location),
        "backbone_layer": gradcam.layer_name,
        "images": report.records,
        "skipped": [{"path": str(problem.path), "reason": problem.reason} for problem in report.problems],
        "unknown_classes": report.unknown_classes,
        "notes": report.notes,
    }, indent=2) + "\n")


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(fit(Image.fromarray(read_rgb(str(path), least_side=TILE_SIDE)), TILE_SIDE, TILE_SIDE))


def _write_picture(result: Explanation, class_names: Sequence[str], picture: Path) -> list[Panel]:
    panels = [
        Panel(f"{class_names[heatmap.class_index]} {heatmap.probability:.1%}", heatmap.values,
              heatmap.peak(result.width, result.height), (result.width, result.height))
        for heatmap in result.heatmaps
    ]
    pixels = read_rgb(str(result.path), least_side=DISPLAY_SIDE)
    write_atomic(picture, explanation_png(pixels, result.path.name, panels))
    return panels


def _records(result: Explanation, class_names: Sequence[str], picture: Path) -> list[dict]:
    return [
        {
            "path": str(result.path),
            "class": class_names[heatmap.class_index],
            "probability": round(heatmap.probability, 6),
            "peak": heatmap.peak(result.width, result.height),
            "predicted": class_names[result.predicted],
            "grid": list(heatmap.values.shape),
            "picture": str(picture),
        }
        for heatmap in result.heatmaps
    ]
