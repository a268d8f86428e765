"""Occlusion: where in an image a saved classifier found its evidence, found by hiding each part in turn.

A square window slides over the image as the model sees it (`image_size` pixels square); at each
position the window is filled with the image's mean colour, and all the hidden copies of an image
are classified in batches. A cell of the map is the mean drop in the class's log-odds over the
windows that cover it (Zeiler and Fergus, 2014): where hiding costs the class most, its evidence
lies. It asks the model itself, so it needs no particular layer and works at any image size; it
costs one forward pass per window position, 144 per image.

The window is 5/16 of the image's side and moves 1/16 at a time; the fill is the image's mean
colour. Both were measured against other choices (a quarter or 3/8 window, a blur of the image,
a copy from another image) on images whose evidence is known: see bench/README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tlcli.inference.heatmaps import Heatmap

MAP_CELLS = 16  # cells per side of the map, whatever the image size: the window moves a cell at a time
WINDOW_CELLS = 5  # cells per side of the window: 5/16 of the image (20 px at 64 px)


@dataclass(frozen=True)
class Geometry:
    """Where the window goes on an `image_size` square: a grid of cells `cell` pixels wide, and a
    window `window` cells wide that moves one cell at a time."""

    image_size: int
    cell: int
    window: int

    @property
    def cells(self) -> int:
        return math.ceil(self.image_size / self.cell)

    @property
    def window_pixels(self) -> int:
        return min(self.window * self.cell, self.image_size)

    def positions(self) -> list[tuple[int, int]]:
        """The window's top-left cell (row, column) at every position."""
        steps = range(self.cells - self.window + 1)
        return [(row, column) for row in steps for column in steps]


def geometry(image_size: int) -> Geometry:
    """The window and its step for `image_size`: MAP_CELLS steps a side, a window WINDOW_CELLS
    steps wide (at 64 px: 4 px steps, a 20 px window, 12 x 12 positions)."""
    cell = max(1, round(image_size / MAP_CELLS))
    return Geometry(image_size, cell, min(WINDOW_CELLS, math.ceil(image_size / cell)))


def log_odds(probabilities: np.ndarray, targets: np.ndarray, multi_label: bool) -> np.ndarray:
    """Each row's log-odds of its target class: log p - log(1 - p), the 1 - p of a softmax summed
    over the other classes so that a probability near 1 keeps its precision."""
    probabilities = np.asarray(probabilities, np.float64)
    chosen = probabilities[np.arange(len(targets)), targets]
    if multi_label:
        others = 1 - chosen
    else:
        others = np.where(np.eye(probabilities.shape[1], dtype=bool)[targets], 0, probabilities).sum(axis=1)
    return np.log(np.maximum(chosen, 1e-30)) - np.log(np.maximum(others, 1e-30))


def mean_fill(images: np.ndarray, geometry: Geometry) -> np.ndarray:
    """What a hidden window shows: each image's mean colour. A blur of the image keeps a bright
    object's glow, and a copy from another image draws a square's edges round the window; on the
    benchmark's fixtures the flat colour moved the class's score least away from the evidence and
    removed the evidence best."""
    return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)


Fill = Callable[[np.ndarray, Geometry], np.ndarray]  # images -> what each shows where it is hidden


def predictor(model, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The model's probabilities for any number of images in [0, 255], `batch_size` at a time,
    in inference mode."""
    import tensorflow as tf

    call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(call(tf.convert_to_tensor(images[start:start + batch_size], tf.float32)))
                               for start in range(0, len(images), batch_size)])

    return predict


def hidden(image: np.ndarray, fill: np.ndarray, regions: Sequence[tuple[slice, slice]]) -> np.ndarray:
    """A copy of `image` per region, with that region taken from `fill`."""
    copies = np.repeat(image[None], len(regions), axis=0)
    for copy, (rows, columns) in zip(copies, regions):
        copy[rows, columns] = fill[rows, columns]
    return copies


class Occlusion:
    """Occlusion maps of a saved tlcli classifier, raw pixels in (as predict takes them)."""

    def __init__(self, model, image_size: int, multi_label: bool = False, fill: Fill = mean_fill,
                 batch_size: int = 64):
        self.geometry = geometry(image_size)
        self.multi_label = multi_label
        self.fill = fill
        self.predict = predictor(model, batch_size)

    def fills(self, images: np.ndarray) -> np.ndarray:
        return self.fill(np.asarray(images, np.float32), self.geometry)

    def __call__(self, images, classes: Sequence[int]) -> tuple[np.ndarray, list[Heatmap]]:
        """(probabilities, a Heatmap per image) for a batch of images in [0, 255], each explained
        for its entry of `classes`: a class index, or PREDICTED."""
        probabilities, (heatmaps,) = self.maps(images, [classes])
        return probabilities, heatmaps

    def maps(self, images, class_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[list[Heatmap]]]:
        """(probabilities, a list of Heatmaps per entry of `class_lists`): each image hidden once
        per window, whatever the number of classes explained."""
        images = np.asarray(images, np.float32)
        probabilities = self.predict(images)
        grid, cell = self.geometry, self.geometry.cell
        positions = grid.positions()
        regions = [(slice(row * cell, (row + grid.window) * cell), slice(column * cell, (column + grid.window) * cell))
                   for row, column in positions]
        coverage = np.zeros((len(positions), grid.cells, grid.cells))
        for number, (row, column) in enumerate(positions):
            coverage[number, row:row + grid.window, column:column + grid.window] = 1
        coverage /= coverage.sum(axis=0)  # each cell: the mean over the windows that cover it
        targets = [np.where(np.asarray(classes) >= 0, classes, probabilities.argmax(axis=1)).astype(int)
                   for classes in class_lists]
        heatmaps: list[list[Heatmap]] = [[] for _ in class_lists]
        for position, (image, fill) in enumerate(zip(images, self.fills(images))):
            hidden_probabilities = self.predict(hidden(image, fill, regions))
            for chosen, maps in zip(targets, heatmaps):
                target = np.full(len(regions), chosen[position])
                drops = log_odds(probabilities[[position]], target[:1], self.multi_label) - log_odds(
                    hidden_probabilities, target, self.multi_label)
                maps.append(Heatmap(int(chosen[position]), float(probabilities[position, chosen[position]]),
                                    _scaled(np.tensordot(drops, coverage, axes=1))))
        return probabilities, heatmaps


def _scaled(values: np.ndarray) -> np.ndarray:
    """From the cell where hiding costs the class least (0) to the one where it costs most (1);
    all 0 when every cell is alike."""
    lowest, highest = values.min(), values.max()
    if not highest > lowest:
        return np.zeros(values.shape, np.float32)
    return ((values - lowest) / (highest - lowest)).astype(np.float32)
