"""Near-duplicates: images whose features are nearly the same, grouped, with their splits.

A pair is a near-duplicate when its cosine distance is at most DUPLICATE_SHARE of the dataset's
typical distance between an image and its nearest other image (the median). A fixed cosine
threshold cannot serve every backbone: between distinct images the typical distance was 0.0015
for a random TinyNet and 0.004 for a random VGG16 on the same digits, and is far larger for
ImageNet features. Measured on digits at 32 px (when the threshold was chosen; no script
repeats it), a training image resized and re-encoded as JPEG came within 0.09 (TinyNet) and
0.05 (VGG16) of the typical distance, and the closest two distinct digits at 0.22 and 0.26 of
it: 0.15 lies between.

Pairs come from the neighbour search, so an image joins a group through any of its nearest
neighbours; groups are the connected pairs. A group whose images lie in two or more splits is
leakage (a test image that training saw, in effect) and comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tlcli.audit.neighbours import Neighbours

DUPLICATE_SHARE = 0.15
EXACT = 1e-6  # a cosine distance this small is the same features, whatever the typical distance


@dataclass
class DuplicateGroup:
    members: list[int]  # image positions, in the order of the images
    similarity: float  # the lowest cosine similarity among the pairs that joined the group
    splits: list[str]  # the splits it spans, in train, val, test order

    @property
    def leakage(self) -> bool:
        return len(self.splits) > 1


@dataclass
class Duplicates:
    groups: list[DuplicateGroup] = field(default_factory=list)  # leakage first, then larger, then closer
    pairs: int = 0  # near-duplicate pairs found
    typical_distance: float = 0.0  # the median cosine distance from an image to its nearest other image
    threshold: float = 0.0  # the cosine similarity at or above which two images are near-duplicates

    @property
    def leaking(self) -> list[DuplicateGroup]:
        return [group for group in self.groups if group.leakage]


def find_duplicates(neighbours: Neighbours, splits: Sequence[str]) -> Duplicates:
    """Group the near-duplicate pairs among every image's nearest neighbours; `splits` names
    each image's split."""
    if not len(neighbours.nearest):
        return Duplicates()
    typical = float(np.median(neighbours.nearest))
    limit = max(DUPLICATE_SHARE * typical, EXACT)
    close = neighbours.distances <= limit
    firsts = np.repeat(np.arange(len(splits)), close.sum(axis=1))
    pairs = {(min(a, b), max(a, b)): float(d) for a, b, d in
             zip(firsts.tolist(), neighbours.indices[close].tolist(), neighbours.distances[close].tolist())}
    groups = _connected(pairs, splits)
    return Duplicates(groups, len(pairs), typical, 1.0 - limit)


def _connected(pairs: dict[tuple[int, int], float], splits: Sequence[str]) -> list[DuplicateGroup]:
    """The groups the pairs connect (union-find), ranked: leakage first, then larger, then closer."""
    parent: dict[int, int] = {}

    def root(item: int) -> int:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    farthest: dict[int, float] = {}
    for first, second in pairs:
        parent[root(first)] = root(second)
    for (first, _), distance in pairs.items():
        farthest[root(first)] = max(farthest.get(root(first), 0.0), distance)
    members: dict[int, list[int]] = {}
    for item in parent:
        members.setdefault(root(item), []).append(item)
    order = {"train": 0, "val": 1, "test": 2}
    groups = [DuplicateGroup(sorted(items), 1.0 - farthest[key],
                             sorted({splits[item] for item in items}, key=lambda split: order.get(split, 3)))
              for key, items in members.items()]
    return sorted(groups, key=lambda group: (not group.leakage, -len(group.members), -group.similarity))
