"""Running a frozen backbone over images once: for `tlcli extract` and cached-feature training."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from tlcli.data.dataset import Sample
from tlcli.data.packed import reading_shards
from tlcli.data.pipeline import image_dataset, row_dataset, tf
from tlcli.data.row_cache import RowCache


@dataclass
class Features:
    features: np.ndarray  # float32, images x feature size
    labels: np.ndarray  # int64; with multi-label samples, their multi-hot targets (images x classes)
    indices: np.ndarray  # positions in the samples given (a file that fails to decode is absent)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2


@dataclass
class FeatureBatch:
    features: np.ndarray  # float32 (or the extractor's own dtype), batch x feature size
    labels: np.ndarray  # int64
    indices: np.ndarray  # positions in the samples given, increasing


def feature_shape(extractor) -> tuple[int, ...]:
    return tuple(int(size) for size in extractor.output_shape[1:])


_FORWARD_PASSES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def forward_pass(extractor):
    """The extractor's inference call as a tf.function, traced once per extractor and reused
    (cached training extracts train and val; a benchmark extracts many times)."""
    if extractor not in _FORWARD_PASSES:
        # Through a weak reference, so that the cached function does not keep the model alive.
        model = weakref.ref(extractor)
        # A tf.function forward pass: Keras's `predict` is slower and erratic on single batches.
        _FORWARD_PASSES[extractor] = tf.function(
            lambda images: model()(images, training=False), reduce_retracing=True
        )
    return _FORWARD_PASSES[extractor]


def feature_batches(
    extractor, samples: Sequence[Sample], image_size: int, batch_size: int = 32, placement=None,
    decoded: RowCache | None = None, dtype=tf.float32,
) -> Iterator[FeatureBatch]:
    """Stream images through `extractor`, one batch of features at a time, in sample order.

    Nothing but the current batches is held, so a caller that writes each batch away keeps
    memory flat however many images there are. With a `placement` of several replicas or
    workers, each batch is shared out among them (`batch_size` per replica). With `decoded`
    (the samples' images decoded once, `decode_into_cache`) the images are read from it.
    The features come as `dtype` whatever the precision the backbone computed in (None: as it
    computed them).
    """
    from tlcli.distribute.placement import map_batches

    forward = forward_pass(extractor)

    def make(shard_count, shard_index, batch):
        shard = (shard_count, shard_index)
        if decoded is not None:
            return row_dataset(decoded, samples, batch, with_index=True, shard=shard, dtype=tf.float32)
        return image_dataset(samples, image_size, batch, with_index=True, shard=shard)

    def features(images):
        return forward(images) if dtype is None else tf.cast(forward(images), dtype)

    with reading_shards(samples):
        for batch_features, labels, indices in map_batches(placement, features, make, batch_size):
            yield FeatureBatch(batch_features, labels.astype(np.int64), indices)


def extract_features(
    extractor,
    samples: Sequence[Sample],
    image_size: int,
    batch_size: int = 32,
    advance: Callable[[int], None] | None = None,
    decoded: RowCache | None = None,
) -> Features:
    """Stream images through `extractor` (read from `decoded`, if given); memory holds the
    features, never the images."""
    features = np.empty((len(samples), *feature_shape(extractor)), np.float32)
    targets = samples[0].targets if len(samples) else None
    labels = np.empty((len(samples),) if targets is None else (len(samples), len(targets)), np.int64)
    kept = np.zeros(len(samples), bool)
    for batch in feature_batches(extractor, samples, image_size, batch_size, decoded=decoded):
        features[batch.indices] = batch.features
        labels[batch.indices] = batch.labels
        kept[batch.indices] = True
        if advance is not None:
            advance(len(batch.indices))
    positions = np.flatnonzero(kept)
    if len(positions) == len(samples):
        return Features(features, labels, positions)
    return Features(features[positions], labels[positions], positions)
