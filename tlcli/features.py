"""Running a frozen backbone over images once: for `tlcli extract` and cached-feature training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tlcli.data import Sample
from tlcli.pipeline import image_dataset, tf


@dataclass
class Features:
    features: np.ndarray  # float32, images x feature size
    labels: np.ndarray  # int64
    indices: np.ndarray  # positions in the samples given (a file that fails to decode is absent)


def extract_features(
    extractor,
    samples: Sequence[Sample],
    image_size: int,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> Features:
    """Stream images through `extractor`; memory holds the features, never the images."""
    # A tf.function forward pass: Keras's `predict` is slower and erratic on single batches.
    forward = tf.function(lambda images: extractor(images, training=False), reduce_retracing=True)
    feature_shape = tuple(extractor.output_shape[1:])
    features = np.empty((len(samples), *feature_shape), np.float32)
    labels = np.empty(len(samples), np.int64)
    kept = np.zeros(len(samples), bool)
    for images, batch_labels, indices in image_dataset(samples, image_size, batch_size, with_index=True):
        indices = indices.numpy()
        features[indices] = forward(images).numpy()
        labels[indices] = batch_labels.numpy()
        kept[indices] = True
        if on_batch is not None:
            on_batch(len(indices))
    positions = np.flatnonzero(kept)
    if len(positions) == len(samples):
        return Features(features, labels, positions)
    return Features(features[positions], labels[positions], positions)
