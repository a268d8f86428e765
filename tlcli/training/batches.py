"""The batches a run trains on, shared out as its placement needs: images (decoded in every
epoch, or once for the run: `decode_splits`) and cached features.

Every source gives the same batches in the same order under the same seed and epoch, so a head
trained on cached features, or a stage on decoded images, reads what the images would give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlcli.data.pipeline import decode_into_cache, epochs, image_dataset, row_dataset, tf
from tlcli.data.row_cache import DEFAULT_MEMORY_BUDGET, RowCache, where
from tlcli.distribute.placement import Placement, distribute
from tlcli.events import SILENT, Events
from tlcli.models.features import Features
from tlcli.training.fit import with_targets


def image_batches(placement: Placement, samples, image_size: int, batch_size: int, num_classes: int, *,
                  shuffle: bool = False, seed: int = 0, epoch=None, class_weights=None, augment=None,
                  endless: bool = False, decoded: RowCache | None = None):
    """(batches of images and targets, steps per epoch), shared out as the placement needs.
    `epoch` is the `epoch_counter()` that numbers the epochs for the shuffle and augmentation;
    `endless` batches repeat epoch after epoch. With `decoded` (the samples' images decoded
    once, see `decode_splits`) the images are read from it, in the same batches."""
    def make(count, index, batch, repeat_batches):
        options = dict(shuffle=shuffle, seed=seed, epoch=epoch, augment=augment, shard=(count, index),
                       repeat_batches=repeat_batches)
        images = (row_dataset(decoded, samples, batch, dtype=tf.float32, **options) if decoded is not None
                  else image_dataset(samples, image_size, batch, **options))
        return with_targets(images, num_classes, class_weights)

    return distribute(placement, make, len(samples), batch_size, endless=endless)


class DecodedImages:
    """Each split's images decoded and resized once for the run, as uint8 (`RowCache`s by split
    name; none when not decoded ahead). A context: leaving it releases them."""

    def __init__(self, caches: dict[str, RowCache]):
        self.caches = caches

    def get(self, split: str) -> RowCache | None:
        return self.caches.get(split)

    def __enter__(self) -> "DecodedImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for cache in self.caches.values():
            cache.close()
        self.caches = {}


def decode_splits(enabled: bool, splits: dict, image_size: int, batch_size: int, *, scratch_dir: Path | None,
                  events: Events = SILENT, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> DecodedImages:
    """The splits' images decoded once for every epoch of an end-to-end run, if `enabled`.

    Rounded to uint8 (at most 0.5 from the float32 resize), a quarter of float32's size, and
    the same in every epoch, the first one included, so a resumed run reads the same pixels.
    The splits share one memory budget; what does not fit spills to a scratch file in
    `scratch_dir` (the system's temporary folder if None), unlinked at once. Every worker
    decodes all the images itself: each epoch shards a new shuffle, so a worker reads every
    image in the run, and decoding (milliseconds an image) is cheaper than sharing the
    decoded rows between workers (150 KB a 224 px image).
    """
    caches: dict[str, RowCache] = {}
    if not enabled:
        return DecodedImages(caches)
    budget = memory_budget
    for split, samples in splits.items():
        if not samples:
            continue
        with events.counting(f"Decoding ({split})", len(samples)) as advance:
            caches[split] = decode_into_cache(samples, image_size, batch_size, memory_budget=budget,
                                              scratch_dir=scratch_dir, advance=advance)
        if caches[split].in_memory:
            budget -= caches[split].nbytes
    counts = " + ".join(f"{int(cache.filled.sum())} {split}" for split, cache in caches.items())
    total = sum(cache.nbytes for cache in caches.values())
    events.note(f"Images decoded once for every epoch: {counts} at {image_size}x{image_size}, "
                f"{total / 2**20:.1f} MB {where(caches.values())} (--no-cache-images decodes them every epoch).")
    return DecodedImages(caches)


def feature_dataset(features: Features, num_classes: int, batch_size: int, seed: int = 0, *, shuffle: bool = False,
                    epoch=None, repeat_batches: int = 0, class_weights=None, shard: tuple[int, int] = (1, 0)):
    """Batches of cached features and their targets, for training a head, in the order in which
    `image_dataset` would give their images under the same seed and epoch."""
    def batches(rows, _):
        return with_targets(rows.shard(*shard), num_classes, class_weights).batch(batch_size)

    # Multi-hot targets as float32, which with_targets passes as they are.
    labels = features.labels.astype(np.float32) if features.multi_label else features.labels
    columns = (tf.constant(features.features), tf.constant(labels))
    data = epochs(columns, batches, shuffle=shuffle, seed=seed, epoch=epoch, repeat_batches=repeat_batches)
    return data.prefetch(tf.data.AUTOTUNE)
