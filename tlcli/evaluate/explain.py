"""Grad-CAM: where in an image a saved classifier found its evidence for a class.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the backbone's last convolutional
block (`BackboneSpec.last_conv_layer`) by the mean gradient of the class's score over it and
sums the channels: a coarse map, one cell per position of that block, of where the evidence
for the class lies. It runs on the model as saved, raw pixels in: the gradient
flows back through the head and the frozen or fine-tuned top of the backbone, with
BatchNormalization and dropout in inference mode, as in prediction.
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
from tlcli.evaluate.heatmaps import DISPLAY_SIDE, TILE_SIDE, Panel, contact_sheet_png, explanation_png, fit
from tlcli.evaluate.predict import collect_image_files
from tlcli.models.backbones import BACKBONES, BackboneSpec
from tlcli.models.weights import keras_model_name_matches
from tlcli.runs.directory import read_run
from tlcli.runs.atomic import write_atomic
from tlcli.runs.outputs import building, claim_output, kept_note
from tlcli.runs.locks import locks_outputs
from tlcli.runs.remote import staged_output
from tlcli.runtime import import_keras
from tlcli.storage import location

PREDICTED = -1  # in place of a class index: explain the class the model predicts
TRUE = -2  # in place of a class index: explain the image's own label
EXPLAIN_FOLDER = "explain"  # inside the run directory, without --out
CONTACT_SHEET = "contact_sheet.png"
EXPLAIN_JSON = "explain.json"
SHEET_IMAGES = 100  # a contact sheet shows the first images; every image has its own picture


@dataclass(frozen=True)
class Heatmap:
    """One class's Grad-CAM map of one image."""

    class_index: int
    probability: float
    values: np.ndarray  # float32 rows x columns covering the whole image, from 0 to 1; all 0 when flat

    def peak(self, width: int, height: int) -> dict | None:
        """The centre of the hottest cell, in the pixels of an image `width` x `height` (the model
        sees the whole image, resized); None for a flat map (a single cell, or all cells alike)."""
        if not self.values.max() > 0:
            return None
        row, column = np.unravel_index(np.argmax(self.values), self.values.shape)
        rows, columns = self.values.shape
        return {"x": int((column + 0.5) * width / columns), "y": int((row + 0.5) * height / rows)}


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


def find_backbone(model) -> tuple[object, BackboneSpec]:
    """The backbone inside a saved tlcli classifier, and its row of the backbone table."""
    for layer in model.layers:
        for spec in BACKBONES.values():
            if hasattr(layer, "get_layer") and keras_model_name_matches(layer.name, spec):
                return layer, spec
    raise TlcliError(
        f"{model.name} holds none of the backbones tlcli builds ({', '.join(BACKBONES)}), so it has no "
        "convolutional block to explain. Explain a model that tlcli train or finetune wrote."
    )


class GradCam:
    """Grad-CAM maps of a saved tlcli classifier: image -> preprocessing -> backbone -> pooling ->
    head (its last layer a softmax Dense, or a multi-label run's sigmoid Dense, whose logits are
    explained) -> temperature, if calibrated."""

    def __init__(self, model):
        keras = import_keras()
        import tensorflow as tf

        base, self.backbone = find_backbone(model)
        block = self.backbone.explain_layer(base)
        self.layer_name = block.name
        # The base cut in two at the block, so that the tape records only what follows it: the
        # gradient is taken at the block's output, and nothing below it needs one.
        to_block = keras.Model(base.inputs, block.output)
        from_block = keras.Model(block.output, base.output) if block.output is not base.output else None
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        before, after = layers[: layers.index(base)], _flatten(layers[layers.index(base) + 1 :])
        classifier, sigmoid = _last_classifier_dense(after, model.name)
        to_logits, to_output = after[: after.index(classifier)], after[after.index(classifier) + 1 :]

        def maps(images, classes):
            x = images
            for layer in before:
                x = layer(x, training=False)
            block_output = to_block(x, training=False)
            with tf.GradientTape() as tape:
                tape.watch(block_output)
                x = from_block(block_output, training=False) if from_block is not None else block_output
                for layer in to_logits:
                    x = layer(x, training=False)
                logits = tf.cast(tf.matmul(x, classifier.kernel) + classifier.bias, tf.float32)
                probabilities = tf.sigmoid(logits) if sigmoid else tf.nn.softmax(logits)
                for layer in to_output:  # a temperature changes the probabilities, not the map's shape
                    probabilities = layer(probabilities, training=False)
                targets = tf.where(classes >= 0, classes, tf.argmax(probabilities, axis=-1, output_type=tf.int32))
                # The class's logit against the mean logit: softmax ignores a shift shared by all
                # logits, and a solved two-class head keeps one logit at zero, so only this is evidence.
                # A sigmoid label's own logit is its evidence: no other label's shifts it.
                margins = logits if sigmoid else logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
                score = tf.reduce_sum(tf.gather(margins, targets, batch_dims=1))
            block_output = tf.cast(block_output, tf.float32)
            gradients = tf.cast(tape.gradient(score, block_output), tf.float32)
            channel_weights = tf.reduce_mean(gradients, axis=(1, 2))
            heat = tf.einsum("bhwc,bc->bhw", block_output, channel_weights)
            # Scaled from the cell that supports the class least (0) to the one that supports it
            # most (1). The paper keeps only cells that raise the score in absolute terms (a ReLU);
            # but a head on standardised features reads evidence against each feature's average,
            # so that map is often blank, while the cells' order, which the scaling keeps, is not.
            lowest = tf.reduce_min(heat, axis=(1, 2), keepdims=True)
            heat = tf.math.divide_no_nan(heat - lowest, tf.reduce_max(heat, axis=(1, 2), keepdims=True) - lowest)
            return probabilities, targets, heat

        self._maps = tf.function(maps, reduce_retracing=True)

    def __call__(self, images, classes: Sequence[int]) -> tuple[np.ndarray, list[Heatmap]]:
        """(probabilities, a Heatmap per image) for a batch of images in [0, 255], each explained
        for its entry of `classes`: a class index, or PREDICTED."""
        import tensorflow as tf

        probabilities, targets, heat = self._maps(
            tf.convert_to_tensor(images, tf.float32), tf.constant(classes, tf.int32)
        )
        probabilities, targets, heat = probabilities.numpy(), targets.numpy(), heat.numpy()
        return probabilities, [
            Heatmap(int(target), float(row[target]), values)
            for row, target, values in zip(probabilities, targets, heat)
        ]


def _flatten(layers) -> list:
    """Sequential models (the head) opened into their layers, in order."""
    keras = import_keras()
    flat = []
    for layer in layers:
        flat.extend(_flatten(layer.layers) if isinstance(layer, keras.Sequential) else [layer])
    return flat


def _last_classifier_dense(layers, model_name: str):
    """(the last Dense layer, whether it is a multi-label sigmoid) when it is a classifier tlcli builds."""
    keras = import_keras()
    for layer in reversed(layers):
        if isinstance(layer, keras.layers.Dense):
            activation = keras.activations.serialize(layer.activation)
            if activation in ("softmax", "keras.activations.softmax", "sigmoid", "keras.activations.sigmoid"):
                return layer, "sigmoid" in activation
            break
    raise TlcliError(
        f"{model_name} does not end in the softmax (or multi-label sigmoid) classifier tlcli builds, so it has no "
        "class scores "
        "to explain. Explain a model that tlcli train or finetune wrote."
    )


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
