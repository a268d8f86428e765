"""What a fine-tuning stage trains on: images, or the frozen lower part's output computed once.

A stage that unfreezes the backbone from a block trains only what is above that block's start.
Without augmentation and with BatchNormalization in inference mode, the
frozen part below gives each image the same output in every epoch, so the stage can compute it
once (`cached_inputs`) and train the classifier's upper part on it (`Split.upper`, which shares
the classifier's weights). The batches are the ones the images would give: the same order in
every epoch, the same shard per worker, the same images left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.data.dataset import Dataset
from tlcli.data.pipeline import epoch_counter, row_dataset
from tlcli.data.row_cache import RowCache, where
from tlcli.distribute.placement import Placement, distribute
from tlcli.models.backbones import BackboneSpec
from tlcli.models.features import feature_batches
from tlcli.models.split import Split, block_start, split_classifier
from tlcli.training.config import FitConfig
from tlcli.training.batches import DecodedImages, image_batches
from tlcli.training.fit import class_weights_for, with_targets

# Caching pays when the frozen part below the cut is at least this share of the backbone's
# multiply-adds. Each epoch it saves that share of a forward pass per image, against one pass of
# the frozen part to build the cache and the memory or disk the cut's output takes; below a
# quarter (VGG16's block2, ResNet50's conv2 and conv3) the cut is large and the saving small.
MIN_FROZEN_SHARE = 0.25
END_TO_END = "end to end"


@dataclass
class StageInputs:
    """The batches a fine-tuning stage trains and validates on, for its placement."""

    train_data: object
    steps: int
    val_data: object | None
    val_steps: int | None
    epoch: object  # the training batches' epoch counter
    repeating: bool  # multi-worker: every epoch is a fixed number of steps
    endless: object  # () -> the training batches repeating without end, for the range test
    caches: list = field(default_factory=list)  # RowCaches to close when the stage ends

    def close(self) -> None:
        for cache in self.caches:
            cache.close()
        self.caches.clear()


@dataclass(frozen=True)
class Route:
    """How a stage runs: on cached rows at `split`'s cut, or end to end (split None), and why."""

    split: Split | None
    reason: str  # why end to end, or where the cut is


def plan_route(model, base, spec: BackboneSpec, start: int, cache_features: bool, unfreeze: str,
               augmented: bool = False) -> Route:
    """Cache at the highest block boundary at or below `start` when the frozen part below it is
    worth computing once (see MIN_FROZEN_SHARE); otherwise end to end, saying why. Augmented
    images change every epoch, so their frozen output cannot be computed once."""
    if not cache_features:
        return Route(None, "--no-cache-features")
    if augmented:
        return Route(None, "the training images are augmented, so they differ in every epoch")
    if all(block_start(base, block) > start for block in spec.blocks):
        return Route(None, f"nothing below {unfreeze} is frozen")
    split = split_classifier(model, base, spec, start)
    if split is None:
        return Route(None, f"no single-tensor block boundary at or below {unfreeze}")
    if split.frozen_share < MIN_FROZEN_SHARE:
        return Route(None, f"the frozen part below {unfreeze} is {split.frozen_share:.0%} of the forward pass "
                           f"(caching pays from {MIN_FROZEN_SHARE:.0%})")
    return Route(split, f"cut at {split.boundary}, {split.frozen_share:.0%} of the forward pass below it")


def image_inputs(placement: Placement, dataset: Dataset, image_size: int, fit_config: FitConfig,
                 decoded: DecodedImages | None = None, augment=None) -> StageInputs:
    """The stage's batches of images: decoded once per run (`decoded`, see `decode_splits`), or
    in every epoch without it; the training batches go through `augment` (an augmenter, or None)."""
    num_classes = len(dataset.class_names)
    train_samples, val_samples = dataset.split("train"), dataset.splits.get("val", ())
    class_weights = class_weights_for(fit_config, [sample.label for sample in train_samples], num_classes)
    decoded = decoded or DecodedImages({})
    epoch = epoch_counter()
    train_data, steps = image_batches(placement, train_samples, image_size, fit_config.batch_size, num_classes,
                                      shuffle=True, seed=fit_config.seed, epoch=epoch, class_weights=class_weights,
                                      augment=augment, decoded=decoded.get("train"))
    val_data, val_steps = (
        image_batches(placement, val_samples, image_size, fit_config.batch_size, num_classes,
                      decoded=decoded.get("val")) if val_samples
        else (None, None)
    )

    def endless():
        return image_batches(placement, train_samples, image_size, fit_config.batch_size, num_classes, shuffle=True,
                             seed=fit_config.seed, class_weights=class_weights, endless=True, augment=augment,
                             decoded=decoded.get("train"))[0]

    return StageInputs(train_data, steps, val_data, val_steps, epoch, placement.num_workers > 1, endless)


@dataclass(frozen=True)
class CacheReport:
    images: int
    nbytes: int
    where: str  # see row_cache.where
    seconds: float

    @property
    def in_memory(self) -> bool:
        return self.where == "in memory"

    def describe(self) -> str:
        return f"{self.images} images, {self.nbytes / 2**20:.1f} MB {self.where}, built in {self.seconds:.1f} s"


def cached_inputs(placement: Placement, dataset: Dataset, split: Split, image_size: int, fit_config: FitConfig,
                  *, memory_budget: int, scratch_dir: Path, validation: bool = True,
                  decoded: DecodedImages | None = None) -> tuple[StageInputs, CacheReport]:
    """The stage's batches read from the frozen part's output, computed here once per image
    (validation images too, unless `validation` is False) from the images `decoded` once for
    the run, if given: the same batches as `image_inputs` with the same `decoded`."""
    decoded = decoded or DecodedImages({})
    num_classes = len(dataset.class_names)
    train_samples = dataset.split("train")
    val_samples = dataset.splits.get("val", ()) if validation else ()
    class_weights = class_weights_for(fit_config, [sample.label for sample in train_samples], num_classes)
    started = time.perf_counter()
    train_cache = build_cache(placement, split, train_samples, image_size, fit_config.batch_size,
                              memory_budget=memory_budget, scratch_dir=scratch_dir, decoded=decoded.get("train"))
    caches = [train_cache]
    left = memory_budget - (train_cache.nbytes if train_cache.in_memory else 0)
    if val_samples:
        caches.append(build_cache(placement, split, val_samples, image_size, fit_config.batch_size,
                                  memory_budget=max(0, left), scratch_dir=scratch_dir, decoded=decoded.get("val")))
    epoch = epoch_counter()

    def batches(cache, samples, *, shuffle: bool, endless: bool = False, epoch=None):
        def make(count, index, batch, repeat_batches):
            rows = row_dataset(cache, samples, batch, shuffle=shuffle, seed=fit_config.seed, epoch=epoch,
                               shard=(count, index), repeat_batches=repeat_batches)
            return with_targets(rows, num_classes, class_weights if shuffle else None)

        return distribute(placement, make, len(samples), fit_config.batch_size, endless=endless)

    train_data, steps = batches(train_cache, train_samples, shuffle=True, epoch=epoch)
    val_data, val_steps = batches(caches[1], val_samples, shuffle=False) if val_samples else (None, None)
    inputs = StageInputs(train_data, steps, val_data, val_steps, epoch, placement.num_workers > 1,
                         lambda: batches(train_cache, train_samples, shuffle=True, endless=True)[0], caches)
    report = CacheReport(len(train_samples) + len(val_samples), sum(cache.nbytes for cache in caches),
                         where(caches), time.perf_counter() - started)
    return inputs, report


def build_cache(placement: Placement, split: Split, samples, image_size: int, batch_size: int, *,
                memory_budget: int, scratch_dir: Path, decoded: RowCache | None = None) -> RowCache:
    """Every sample's output at the split's cut, computed by its frozen lower part from its image
    (read from `decoded`, the images decoded once for the run, when given). Under several
    workers each computes its shard of the images and every worker receives all rows."""
    cache = RowCache(len(samples), split.row_shape, split.dtype, memory_budget=memory_budget,
                     scratch_dir=scratch_dir)
    for batch in feature_batches(split.lower, samples, image_size, batch_size, placement, decoded=decoded,
                                 dtype=None):
        cache.write(batch.indices, batch.features)
    return cache
