"""The deletion test: does hiding a map's hottest region cost the class more than hiding a random one?

After a map is drawn, its hottest region (the square 3/8 of the image's side that holds the most
of the map's heat) is hidden with occlusion's fill and the class's probability measured again; so
is each of RANDOM_REGIONS random squares of the same size, the same squares for every image. The
score is the share of those random squares whose hiding lowered the class's log-odds less than
hiding the map's hottest region did (a tie counts half): near 1 when the map found what the
model relies on, about 0.5 when its hottest region matters no more than a random one. A map is
faithful when it scores above FAITHFUL: on the fine-placement fixture (bench/explain_localisation.py,
TinyNet at 32 and 64 px and VGG16 at 32 px, Grad-CAM's and occlusion's maps and the same maps
moved), 101 of the 104 maps whose peak was on the evidence did, and 18 of the 136 whose peak was
elsewhere. It costs 1 + RANDOM_REGIONS forward passes per image, and one more per map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tlcli.inference.heatmaps import Heatmap
from tlcli.inference.occlusion import Occlusion, hidden, log_odds

RANDOM_REGIONS = 16
HIDDEN_CELLS = 6  # the side of the squares hidden, in occlusion's cells: 3/8 of the image (24 px at 64 px)
FAITHFUL = 0.75  # no higher: one random region in four, or more, costs the class as much to hide
DECISIVE_DROP = float(np.log(10))  # a region whose hiding cuts the class's odds tenfold or more decides it
NOT_FAITHFUL = "one random region in four costs the class as much to hide as its hottest region"


@dataclass(frozen=True)
class Faithfulness:
    """One map's deletion test."""

    score: float | None  # None for a flat map: it has no hottest region
    probability: float  # the class's probability, the image as it is
    hottest_hidden: float | None  # ... with the map's hottest region hidden
    random_hidden: float  # ... with a random region hidden, on average
    localised: bool  # hiding one of the random regions cut the class's odds tenfold: some region decides it

    @property
    def faithful(self) -> bool:
        return self.score is not None and self.score > FAITHFUL

    def record(self) -> dict:
        """The test as explain.json and --json give it."""
        return {
            "faithfulness": None if self.score is None else round(self.score, 3),
            "faithful": self.faithful,
            "probability_hottest_hidden": None if self.hottest_hidden is None else round(self.hottest_hidden, 6),
            "probability_random_hidden": round(self.random_hidden, 6),
        }


class DeletionTest:
    """The deletion test with `occlusion`'s model, cells and fill."""

    def __init__(self, occlusion: Occlusion, seed: int = 0, cells: int = HIDDEN_CELLS):
        self.occlusion = occlusion
        side = occlusion.geometry.image_size
        window = self.window = min(cells * occlusion.geometry.cell, side)
        corners = np.random.default_rng(seed).integers(0, side - window + 1, (RANDOM_REGIONS, 2))
        self.random_regions = [_square(top, left, window, side) for top, left in corners]

    def __call__(self, images, heatmaps: Sequence[Heatmap]) -> list[Faithfulness]:
        """A Faithfulness for each image in [0, 255] and its map."""
        return self.test(images, [heatmaps])[0]

    def test(self, images, heatmap_lists: Sequence[Sequence[Heatmap]]) -> list[list[Faithfulness]]:
        """A Faithfulness per map of each list in `heatmap_lists` (a map per image in each): the
        image as it is and its random regions are classified once, whatever the number of maps."""
        images = np.asarray(images, np.float32)
        side, window = self.occlusion.geometry.image_size, self.window
        fills = self.occlusion.fills(images)
        step = self.occlusion.geometry.cell
        hottest = [[_hottest_region(heatmap, side, window, step) for heatmap in heatmaps] for heatmaps in heatmap_lists]
        variants = []
        for position, (image, fill) in enumerate(zip(images, fills)):
            regions = [region for regions in hottest if (region := regions[position]) is not None]
            variants.append(np.concatenate([image[None], hidden(image, fill, [*self.random_regions, *regions])]))
        probabilities = self.occlusion.predict(np.concatenate(variants))
        rows, start = [], 0
        for variant in variants:
            rows.append(probabilities[start:start + len(variant)])
            start += len(variant)
        results = [[] for _ in heatmap_lists]
        for position, image_rows in enumerate(rows):
            next_hottest = 1 + RANDOM_REGIONS
            for heatmaps, regions, found in zip(heatmap_lists, hottest, results):
                if regions[position] is None:
                    found.append(self._score(image_rows[:1 + RANDOM_REGIONS], None, heatmaps[position].class_index))
                else:
                    found.append(self._score(image_rows[:1 + RANDOM_REGIONS], image_rows[next_hottest],
                                             heatmaps[position].class_index))
                    next_hottest += 1
        return results

    def _score(self, rows: np.ndarray, hottest_row: np.ndarray | None, class_index: int) -> Faithfulness:
        """The test's result from the image's probabilities as it is, then with each random region
        hidden (`rows`), and with the map's hottest region hidden (None for a flat map)."""
        every = rows if hottest_row is None else np.concatenate([rows, hottest_row[None]])
        scores = log_odds(every, np.full(len(every), class_index), self.occlusion.multi_label)
        random_drops = scores[0] - scores[1:1 + RANDOM_REGIONS]
        chosen = every[:, class_index].astype(float)
        random_hidden, localised = float(chosen[1:1 + RANDOM_REGIONS].mean()), bool(random_drops.max() >= DECISIVE_DROP)
        if hottest_row is None:
            return Faithfulness(None, float(chosen[0]), None, random_hidden, localised)
        hottest_drop = scores[0] - scores[-1]
        score = (np.sum(random_drops < hottest_drop) + 0.5 * np.sum(random_drops == hottest_drop)) / RANDOM_REGIONS
        return Faithfulness(float(score), float(chosen[0]), float(chosen[-1]), random_hidden, localised)


def _hottest_region(heatmap: Heatmap, side: int, window: int, step: int) -> tuple[slice, slice] | None:
    """The `window` square, placed in steps of `step` pixels, that holds the most of the map's heat
    (of several alike, the one nearest the peak); None for a flat map."""
    peak = heatmap.peak(side, side)
    if peak is None:
        return None
    rows, columns = heatmap.values.shape
    pixels = heatmap.values[np.arange(side) * rows // side][:, np.arange(side) * columns // side].astype(np.float64)
    total = np.pad(pixels.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    corners = np.unique(np.minimum(np.arange(0, side, step), side - window))
    top, left = np.meshgrid(corners, corners, indexing="ij")
    heat = total[top + window, left + window] - total[top, left + window] - total[top + window, left] + total[top, left]
    distance = np.hypot(top + window / 2 - peak["y"], left + window / 2 - peak["x"])
    best = np.lexsort((distance.ravel(), -np.round(heat.ravel(), 6)))[0]
    return _square(top.ravel()[best], left.ravel()[best], window, side)


def _square(top: int, left: int, window: int, side: int) -> tuple[slice, slice]:
    """The square of `window` pixels at (top, left), moved inside the `side` square if it spills out."""
    top, left = (min(max(0, int(value)), side - window) for value in (top, left))
    return slice(top, top + window), slice(left, left + window)
