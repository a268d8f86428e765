"""`tlcli explain`: maps of where in each image a saved classifier found its evidence for a class.

The maps come from Grad-CAM (`gradcam`) or occlusion (`occlusion`), and each is checked by the
deletion test (`faithfulness`). `Explainer` runs the method asked for, or with "auto" chooses
one for the model and image size; `explain` reads the images and writes the pictures, the
contact sheet and explain.json.
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
from tlcli.inference.faithfulness import NOT_FAITHFUL, DeletionTest, Faithfulness
from tlcli.inference.gradcam import GradCam
from tlcli.inference.heatmaps import (
    DISPLAY_SIDE, METHODS, PREDICTED, TILE_SIDE, Heatmap, Panel, contact_sheet_png, explanation_png, fit,
)
from tlcli.inference.occlusion import Occlusion
from tlcli.inference.predict import collect_image_files
from tlcli.runs.directory import read_run
from tlcli.runs.atomic import write_atomic
from tlcli.runs.outputs import building, claim_output, kept_note
from tlcli.runs.locks import locks_outputs
from tlcli.runs.names import EXPLAIN_FOLDER, EXPLAIN_JSON
from tlcli.runs.staging import staged_output
from tlcli.storage import location

TRUE = -2  # in place of a class index: explain the image's own label
CONTACT_SHEET = "contact_sheet.png"
SHEET_IMAGES = 100  # a contact sheet shows the first images; every image has its own picture
AUTO_TRIAL = 8  # "auto" tries Grad-CAM's maps of this many images with the deletion test


class Explainer:
    """Maps by the method asked for ("gradcam" or "occlusion"), each checked by the deletion test.

    With "auto" the method is chosen on the first batch explained: Grad-CAM, fast, when its maps
    pass the deletion test on the first AUTO_TRIAL images of the batch that have a region to find
    (hiding one of the test's random regions cuts the class's odds tenfold); otherwise occlusion,
    which asks the model itself. An image whose class no region decides cannot tell a right map
    from a wrong one, so it is left out of the trial."""

    def __init__(self, model, image_size: int, multi_label: bool = False, method: str = "auto",
                 batch_size: int = 16):
        # Occlusion classifies 144 hidden copies per image: as many pixels a call as `batch_size`
        # images of 224 px, for small images, saves a fifth of the time at 64 px.
        hidden_batch = min(144, max(batch_size, batch_size * (224 // image_size) ** 2))
        self.occlusion = Occlusion(model, image_size, multi_label, batch_size=hidden_batch)
        self.test = DeletionTest(self.occlusion)
        self.gradcam: GradCam | None = None
        self.method = None if method == "auto" else method
        self.reason = f"--method {method}"  # why this method: for "auto", said once it has chosen
        if method != "occlusion":
            try:
                self.gradcam = GradCam(model)
            except TlcliError:
                if method == "gradcam":
                    raise
                self.method, self.reason = "occlusion", (
                    "method auto: occlusion, as the model has no backbone block of tlcli's table for Grad-CAM")

    def __call__(self, images, class_lists: Sequence[Sequence[int]]
                 ) -> tuple[np.ndarray, list[list[Heatmap]], list[list[Faithfulness]]]:
        """(probabilities, the maps, their deletion tests) of a batch of images in [0, 255]: a list
        of maps (one per image) and of tests for each entry of `class_lists`, whose entries are
        class indices or PREDICTED."""
        images = np.asarray(images, np.float32)
        tried = self._choose(images, class_lists[0]) if self.method is None else None
        if self.method == "occlusion":
            probabilities, heatmaps = self.occlusion.maps(images, class_lists)
            return probabilities, heatmaps, self.test.test(images, heatmaps)
        drawn = [tried or self._gradcam(images, class_lists[0]),
                 *(self._gradcam(images, classes) for classes in class_lists[1:])]
        return drawn[0][0], [heatmaps for _, heatmaps, _ in drawn], [tests for _, _, tests in drawn]

    def _gradcam(self, images: np.ndarray, classes: Sequence[int]) -> tuple:
        """Grad-CAM's (probabilities, maps, their deletion tests) of a batch, for `classes`."""
        probabilities, heatmaps = self.gradcam(images, classes)
        return probabilities, heatmaps, self.test(images, heatmaps)

    def _choose(self, images: np.ndarray, classes: Sequence[int]) -> tuple:
        """Choose the method on this batch, and return Grad-CAM's `_gradcam` of it."""
        tried = self._gradcam(images, classes)
        trial = [test for test in tried[2] if test.localised][:AUTO_TRIAL]
        passed = sum(test.faithful for test in trial)
        mean = np.mean([test.score or 0.0 for test in trial]) if trial else 0.0
        if not trial:
            self.method, self.reason = "gradcam", (
                f"method auto: Grad-CAM, the faster, as no region of the first {len(images)} image(s) decides "
                "their class (hiding one cuts its odds less than tenfold), so no map of them can be checked")
        elif passed == len(trial):
            self.method, self.reason = "gradcam", (
                f"method auto: Grad-CAM, as its maps of {len(trial)} image(s) all passed the deletion test "
                f"(mean faithfulness {mean:.2f})")
        else:
            self.method, self.reason = "occlusion", (
                f"method auto: occlusion, as only {passed} of Grad-CAM's maps of {len(trial)} image(s) passed "
                f"the deletion test (mean faithfulness {mean:.2f})")
        return tried

    def describe(self) -> dict:
        """The method and how it was applied, as explain.json records it."""
        geometry = self.occlusion.geometry
        return {
            "method": self.method,
            "method_reason": self.reason,
            "backbone_layer": self.gradcam.layer_name if self.method == "gradcam" else None,
            **({"occlusion": {"window": geometry.window_pixels, "step": geometry.cell, "fill": "mean colour"}}
               if self.method == "occlusion" else {}),
            "deletion_test": {"window": self.test.window, "random_regions": len(self.test.random_regions)},
        }


@dataclass(frozen=True)
class Explanation:
    path: Path
    width: int  # the image's own size, in pixels
    height: int
    probabilities: np.ndarray  # one per class, in label order
    heatmaps: tuple[Heatmap, ...]  # one per class asked for, in the order asked
    tests: tuple[Faithfulness, ...]  # each map's deletion test

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


def explain_samples(
    explainer: Explainer,
    samples: Sequence[Sample],
    image_size: int,
    classes: Sequence[int],
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray, tuple[Heatmap, ...], tuple[Faithfulness, ...]]]:
    """(index into `samples`, probabilities, a Heatmap and its deletion test per entry of
    `classes`) per decoded image, in sample order. An entry of `classes` is a class index,
    PREDICTED or TRUE (the sample's label)."""
    from tlcli.data.pipeline import image_dataset

    for images, labels, indices in image_dataset(samples, image_size, batch_size, with_index=True):
        class_lists = [labels.numpy() if class_index == TRUE else [class_index] * len(indices) for class_index in classes]
        probabilities, heatmaps, tests = explainer(images.numpy(), class_lists)
        for position, index in enumerate(indices.numpy()):
            yield (int(index), probabilities[position], tuple(maps[position] for maps in heatmaps),
                   tuple(found[position] for found in tests))


def explain_files(
    explainer: Explainer,
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
        for index, probabilities, heatmaps, tests in explain_samples(explainer, samples, image_size, classes,
                                                                     batch_size):
            path = samples[index].path
            results[path] = Explanation(path, checked[path].width, checked[path].height, probabilities, heatmaps,
                                        tests)
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
    method: str = "auto"  # one of METHODS: "auto" chooses Grad-CAM or occlusion (see Explainer)

    def __post_init__(self):
        if self.method not in METHODS:
            raise TlcliError(f"--method {self.method}: not a method tlcli has. Use --method "
                             f"{', '.join(METHODS[:-1])} or {METHODS[-1]}.")


@locks_outputs
def explain(config: ExplainConfig, events: Events = SILENT) -> ExplainReport:
    """Maps of every image in `config.inputs` (files, folders, globs) for the predicted class, or
    for each of `config.class_names`, by `config.method`, each with its deletion test: one PNG
    per image, a contact sheet and explain.json
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
    target = location(out) if out is not None else info.path / EXPLAIN_FOLDER  # a folder, or a URL (runs.staging)
    places = {location(argument) for argument in config.inputs if location(argument).is_dir()}
    claim = dict(overwrite=config.overwrite or out is None, own={"run": (EXPLAIN_FOLDER,)},
                 data=(*places, *info.dataset_places))
    with events.counting("Explaining", len(files)) as advance, \
            staged_output(target, "explain", sources={info.model_location: "the model"}, **claim) as staged:
        claim_output(staged.local, "explain", sources={info.model_path: "the model"}, **claim)
        report = ExplainReport(staged.target, unknown_classes=unknown)
        keras_model, info = load_run_model(config.model)
        explainer = Explainer(keras_model, info.image_size, info.multi_label, config.method, config.batch_size)
        for name in unknown:
            events.skipped(f"--class {name}", "not a class of the model; explaining the others")
        with building(staged.local, "explain") as built:
            _explain_into(report, explainer, files, info, classes, config.batch_size, events, advance,
                          written=built, public=lambda name: staged.public(staged.local / name))
        kept = kept_note(staged.local)
    if kept:
        report.notes.append(kept.replace(str(staged.local), str(staged.target)))
    return report


def _explain_into(report: ExplainReport, explainer: Explainer, files, info, classes, batch_size: int,
                  events: Events, advance: Callable[[int], None], *, written: Path,
                  public: Callable[[str], Path]) -> None:
    """explain's work: the pictures, contact sheet and explain.json written into the folder
    `written`, recorded in `report` by their names once published (`public`), each file counted
    with `advance`. Refused, and nothing published, when no image could be read."""
    tiles = []
    position = {path: number for number, path in enumerate(files, start=1)}
    for result in explain_files(explainer, files, info.image_size, classes, batch_size):
        if isinstance(result, Problem):
            report.problems.append(result)
            events.skipped(result.path, result.reason)
        else:
            picture = picture_name(position[result.path], len(files), result.path)
            panels = _write_picture(result, info.class_names, written / picture)
            report.records.extend(_records(result, info.class_names, public(picture), explainer.method))
            if len(tiles) < SHEET_IMAGES and panels:
                tiles.append((_thumbnail(result.path), panels[0], result.path.name))
        advance(1)
    if not report.records:
        raise TlcliError(f"None of the {len(files)} file(s) could be read as an image. Check the paths.")

    report.notes.extend(_notes(report.records, explainer, info.image_size))
    if len(files) - len(report.problems) > SHEET_IMAGES:
        report.notes.append(f"the contact sheet shows the first {SHEET_IMAGES} images; each image has its own picture")
    if tiles:
        write_atomic(written / CONTACT_SHEET, contact_sheet_png(tiles))
        report.contact_sheet = public(CONTACT_SHEET)
    write_atomic(written / EXPLAIN_JSON, json.dumps({
        "model": str(info.model_location),
        **explainer.describe(),
        "images": report.records,
        "skipped": [{"path": str(problem.path), "reason": problem.reason} for problem in report.problems],
        "unknown_classes": report.unknown_classes,
        "notes": report.notes,
    }, indent=2) + "\n")


def _notes(records: list[dict], explainer: Explainer, image_size: int) -> list[str]:
    """What to know when reading the maps: why their method, how many are not faithful, and
    whether Grad-CAM's block is too coarse to say where."""
    notes = [] if explainer.reason.startswith("--method") else [explainer.reason]
    unfaithful = sum(not record["faithful"] for record in records)
    if unfaithful:
        notes.append(f"{unfaithful} of {len(records)} map(s) are not faithful ({NOT_FAITHFUL}): their captions say "
                     "so, and explain.json has \"faithful\": false" + (
                         "; --method occlusion asks the model itself" if explainer.method == "gradcam" else ""))
    if explainer.method == "gradcam" and records[0]["grid"] == [1, 1]:
        gradcam = explainer.gradcam
        notes.append(
            f"{gradcam.backbone.display_name}'s last block ({gradcam.layer_name}) is a single cell at "
            f"--image-size {image_size}, so the maps cannot say where: use --method occlusion, or train at a larger "
            "--image-size"
        )
    return notes


def caption(label: str, heatmap: Heatmap, test: Faithfulness) -> str:
    """A map's caption: its class (`label`) and probability, then its deletion test, with a
    line saying why when the map is not faithful."""
    if test.score is None:
        return f"{label} {heatmap.probability:.1%}\nflat map: no hottest region"
    if test.faithful:
        return f"{label} {heatmap.probability:.1%}\nfaithfulness {test.score:.2f}"
    return f"{label} {heatmap.probability:.1%}\nnot faithful: {test.score:.2f}\n{NOT_FAITHFUL}"


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(fit(Image.fromarray(read_rgb(str(path), least_side=TILE_SIDE)), TILE_SIDE, TILE_SIDE))


def _write_picture(result: Explanation, class_names: Sequence[str], picture: Path) -> list[Panel]:
    panels = [
        Panel(caption(class_names[heatmap.class_index], heatmap, test), heatmap.values,
              heatmap.peak(result.width, result.height), (result.width, result.height))
        for heatmap, test in zip(result.heatmaps, result.tests)
    ]
    pixels = read_rgb(str(result.path), least_side=DISPLAY_SIDE)
    write_atomic(picture, explanation_png(pixels, result.path.name, panels))
    return panels


def _records(result: Explanation, class_names: Sequence[str], picture: Path, method: str) -> list[dict]:
    return [
        {
            "path": str(result.path),
            "class": class_names[heatmap.class_index],
            "probability": round(heatmap.probability, 6),
            "peak": heatmap.peak(result.width, result.height),
            "predicted": class_names[result.predicted],
            "method": method,
            **test.record(),
            "grid": list(heatmap.values.shape),
            "picture": str(picture),
        }
        for heatmap, test in zip(result.heatmaps, result.tests)
    ]
