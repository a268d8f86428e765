"""The one `tf.data` pipeline that serves training, evaluation, prediction and extraction.

Images are decoded and resized in parallel inside the pipeline, batched and prefetched, so
decoding overlaps with the model's compute. The pipeline streams file paths, never a list of
decoded images, so memory does not grow with the dataset. Evaluation, prediction and export
never augment: augmentation, when asked for, is mapped over training batches only.

Packed samples (`tlcli pack`) are read from their shards instead of files, then decoded by the
same function. A whole split in its own order, unshuffled (extraction, evaluation, validation),
streams from the shards, read in parallel and sharded per worker by file. Anything else (a
shuffled epoch, a subset) draws from the samples' encoded bytes, read once from the shards and
held in memory, so that an epoch's order is the folder run's exactly: a shuffle buffer over the
stream would be cheaper in memory but would give another order, and another model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tlcli.data.dataset import Sample
from tlcli.data.images import decode_rgb, read_rgb
from tlcli.data.packed import read_encoded, record_dataset
from tlcli.data.row_cache import DEFAULT_MEMORY_BUDGET, RowCache
from tlcli.runtime import import_tensorflow

tf = import_tensorflow()

_JPEG_RATIOS = (1, 2, 4, 8)
# What a file that passed the checks but fails to decode in the pipeline is reported as.
DECODE_FAILED = "could not be decoded by TensorFlow (it changed, or is damaged in a way Pillow tolerates)"


def _decode_jpeg_scaled(image_bytes, image_size: int):
    """Decode a JPEG at the smallest DCT scale 1/s (s = 1, 2, 4 or 8) that leaves both sides at
    least s * image_size: the scale Pillow's `draft("RGB", (image_size, image_size))` picks.

    Reduced-size DCT decoding skips most of the work for photos larger than the model's input.
    The accurate integer DCT is libjpeg's own default, so Pillow decodes the same pixels.
    """
    shape = tf.image.extract_jpeg_shape(image_bytes)
    shorter = tf.minimum(shape[0], shape[1])
    ratios = tf.constant(_JPEG_RATIOS, dtype=shorter.dtype)
    fits = shorter // ratios >= image_size
    branch = tf.reduce_max(tf.where(fits, tf.range(len(_JPEG_RATIOS)), 0))
    return tf.switch_case(
        branch,
        [
            (lambda ratio=ratio: tf.io.decode_jpeg(
                image_bytes, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"))
            for ratio in _JPEG_RATIOS
        ],
    )


def decode_image(image_bytes, image_size: int):
    """Encoded JPEG/PNG/GIF/BMP/WebP bytes -> float32 RGB [image_size, image_size, 3] in [0, 255].

    Grey, palette, RGBA, CMYK and 16-bit images all come out as 3-channel RGB. This is the
    only decoding code in tlcli: the exported SavedModel's bytes signature runs it too.
    """
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: _decode_jpeg_scaled(image_bytes, image_size),
        lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
    )
    return resize(image, image_size)


def resize(image, image_size: int):
    """Bilinear resize to a square, antialiased when shrinking (the triangle filter widened by
    the scale factor, as Pillow's BILINEAR does), so fine detail averages instead of aliasing."""
    image = tf.ensure_shape(image, [None, None, 3])
    shape = tf.shape(image)
    # At scale 1 the triangle filter weighs each pixel 1 and its neighbours 0: the resize would
    # return the image itself, at the cost of a full pass (a millisecond for 224x224 images).
    return tf.cond(
        tf.logical_and(shape[0] == image_size, shape[1] == image_size),
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True),
    )


def _load(path, needs_pil, image_size: int):
    def with_pillow():
        image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
        return resize(image, image_size)

    return tf.cond(
        needs_pil, with_pillow, lambda: decode_image(tf.io.read_file(path), image_size)
    )


def _load_encoded(image_bytes, needs_pil, image_size: int):
    """`_load` for a packed image: its encoded bytes instead of its path."""
    def with_pillow():
        image = tf.numpy_function(decode_rgb, [image_bytes], tf.uint8, stateful=False)
        return resize(image, image_size)

    return tf.cond(needs_pil, with_pillow, lambda: decode_image(image_bytes, image_size))


def _whole_split(samples: Sequence[Sample]) -> bool:
    """True when packed `samples` are one split's records, all of them, in their order."""
    split = samples[0].record[0]
    return len(samples) == split.count and all(
        sample.record[0] == split and sample.record[1] == position for position, sample in enumerate(samples))


def _encoded_column(samples: Sequence[Sample]):
    """The packed samples' encoded bytes, in the samples' order."""
    wanted: dict = {}
    for sample in samples:
        wanted.setdefault(sample.record[0], []).append(sample.record[1])
    read = {split: dict(zip(positions, read_encoded(split, positions))) for split, positions in wanted.items()}
    return tf.constant([read[sample.record[0]][sample.record[1]] for sample in samples], tf.string,
                       shape=[len(samples)])


def epoch_counter():
    """The number of the epoch a training pipeline reads (see `image_dataset`); fit sets it."""
    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")


def epochs(columns: tuple, batches, *, shuffle: bool, seed: int, epoch=None, repeat_batches: int = 0):
    """Epochs of `batches(rows, epoch_seed)`, where `rows` is a dataset of the `columns`' rows,
    in an order (with `shuffle`) that depends only on the seed and the epoch's number.

    The number is read from `epoch` (an `epoch_counter()`; 0 without one) when a pass begins,
    so a resumed run reads each epoch exactly as the uninterrupted run did. One pass is one
    epoch, or with `repeat_batches=n` epoch after epoch without end, each cut to n batches.
    """
    def one_epoch(number):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), number])
        rows = columns
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(columns[0])[0]), epoch_seed)
            rows = tuple(tf.gather(column, order) for column in columns)
        dataset = batches(tf.data.Dataset.from_tensor_slices(rows), epoch_seed)
        return dataset.take(repeat_batches) if repeat_batches else dataset

    def numbers(_):
        # Read once, as the pass begins: never ahead of it by the prefetch.
        first = epoch.read_value() if epoch is not None else tf.constant(0, tf.int64)
        return tf.data.Dataset.range(first, tf.int64.max if repeat_batches else first + 1)

    return tf.data.Dataset.from_tensors(0).flat_map(numbers).flat_map(one_epoch)


def _label_column(samples: Sequence[Sample]):
    """The samples' labels (int32), or their multi-hot targets (float32, samples x classes)."""
    if samples and samples[0].targets is not None:
        width = len(samples[0].targets)
        return tf.constant([sample.targets for sample in samples], tf.float32, shape=[len(samples), width])
    return tf.constant([sample.label for sample in samples], tf.int32, shape=[len(samples)])


def image_dataset(
    samples: Sequence[Sample],
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch=None,
    repeat_batches: int = 0,
    with_index: bool = False,
    augment=None,
    shard: tuple[int, int] = (1, 0),
):
    """Batches of (images, labels), or (images, labels, indices) with `with_index`; with
    multi-label samples the labels are their float32 multi-hot targets.

    An epoch's order (`shuffle`) and augmentation depend only on the seed and the epoch's
    number (see `epochs`): a resumed run reads exactly what the uninterrupted one read.
    `repeat_batches=n` reads epoch after epoch, each cut to n batches, for multi-worker
    training, where every worker must run the same number of steps.

    `shard=(count, index)` keeps every count-th file, after the seeded shuffle and before
    decoding, so that workers sharing one shuffle order read disjoint files (a packed split
    streamed from its shards: every count-th shard file).

    `indices` are positions in `samples`: a file that passed the checks but still fails to
    decode is dropped alone (errors are ignored per image, before batching), and the indices
    say which images a batch holds. `augment(images, batch_seed)` (see `tlcli.augment.config`) is
    mapped over the batches, after decoding, when given.
    """
    packed = bool(samples) and samples[0].record is not None
    streamed = packed and not shuffle and not repeat_batches and _whole_split(samples)
    load = _load_encoded if packed else _load
    labels, needs_pil = (
        _label_column(samples), tf.constant([sample.needs_pil for sample in samples], tf.bool, shape=[len(samples)]))
    columns = None if streamed else (_image_column(samples, packed), labels, needs_pil,
                                     tf.range(len(samples), dtype=tf.int64))

    def batches(files, epoch_seed):
        if shard[0] > 1 and not streamed:
            files = files.shard(*shard)
        dataset = files.map(
            lambda path, label, pil, index: (load(path, pil, image_size), label, index),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not packed:  # a file that cannot be decoded is left out (reported by the data check); a
            dataset = dataset.ignore_errors()  # packed image was checked when packed: an error is damage
        return _augmented(dataset.batch(batch_size), augment, epoch_seed)

    if streamed:  # one unshuffled pass, as `epochs` would make it (epoch 0), straight from the shards
        rows = record_dataset(samples[0].record[0], shard).map(
            lambda image, index: (image, tf.gather(labels, index), tf.gather(needs_pil, index), index))
        dataset = batches(rows, tf.constant([seed, 0], tf.int64))
    else:
        dataset = epochs(columns, batches, shuffle=shuffle, seed=seed, epoch=epoch, repeat_batches=repeat_batches)
    return _finish(dataset, with_index)


def _image_column(samples: Sequence[Sample], packed: bool):
    """Where each sample's image is read from: its path, or a packed sample's encoded bytes."""
    if packed:
        return _encoded_column(samples)
    return tf.constant([str(sample.path) for sample in samples], tf.string, shape=[len(samples)])


def _augmented(dataset, augment, epoch_seed):
    """`augment(images, batch_seed)` mapped over batches of (images, labels, indices), if given."""
    if augment is None:
        return dataset
    # One seed per batch, from the epoch's: parallel calls share no random state, so
    # augmentation repeats exactly under the same seed.
    batch_seeds = tf.data.Dataset.range(tf.int64.max).map(
        lambda batch: tf.random.experimental.stateless_fold_in(epoch_seed, batch)
    )
    return tf.data.Dataset.zip(dataset, batch_seeds).map(
        lambda batch, batch_seed: (augment(batch[0], batch_seed), batch[1], batch[2]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def to_uint8(images):
    """Decoded float32 pixels in [0, 255], rounded to the nearest uint8 (at most 0.5 away)."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 255.0)), tf.uint8)


def decode_into_cache(samples: Sequence[Sample], image_size: int, batch_size: int = 32, *,
                      memory_budget: int = DEFAULT_MEMORY_BUDGET, scratch_dir=None, advance=None) -> RowCache:
    """Every sample decoded and resized once by `image_dataset`, kept as uint8 in a `RowCache`
    (in memory within `memory_budget` bytes, else a scratch file in `scratch_dir`), for
    `row_dataset(..., dtype=tf.float32)` to read in every epoch. Memory holds a batch at a time
    besides the cache; an image that fails to decode is left out, as `image_dataset` leaves it.
    `advance(n)` is told of every n images done."""
    cache = RowCache(len(samples), (image_size, image_size, 3), np.uint8, memory_budget=memory_budget,
                     scratch_dir=scratch_dir)
    decoded = image_dataset(samples, image_size, batch_size, with_index=True).map(
        lambda images, labels, indices: (to_uint8(images), indices)
    )
    for images, indices in decoded:
        cache.write(indices.numpy(), images.numpy())
        if advance is not None:
            advance(len(indices))
    return cache


def row_dataset(
    cache: RowCache,
    samples: Sequence[Sample],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch=None,
    repeat_batches: int = 0,
    with_index: bool = False,
    augment=None,
    shard: tuple[int, int] = (1, 0),
    dtype=None,
):
    """Batches of (rows, labels) read from `cache` (one row per sample, computed once), in
    exactly the batches `image_dataset` gives with the same arguments: the same epoch order,
    the same shard, and the images that failed to decode (rows never filled) left out.

    `dtype` casts the rows (decoded uint8 images to float32, as `image_dataset` gives them);
    `augment` is then mapped over the batches with `image_dataset`'s seeds, batch for batch.
    """
    columns = (tf.range(len(samples), dtype=tf.int64), _label_column(samples))
    filled = tf.constant(cache.filled, tf.bool, shape=[len(samples)])
    stored = tf.as_dtype(cache.dtype)

    def read(indices):
        rows = tf.numpy_function(cache.rows, [indices], stored, stateful=False)
        rows = tf.ensure_shape(rows, [None, *cache.row_shape])
        return rows if dtype is None else tf.cast(rows, dtype)

    def batches(rows, epoch_seed):
        if shard[0] > 1:
            rows = rows.shard(*shard)
        rows = rows.filter(lambda index, label: filled[index]).batch(batch_size)
        return _augmented(rows.map(lambda indices, labels: (read(indices), labels, indices)), augment, epoch_seed)

    dataset = epochs(columns, batches, shuffle=shuffle, seed=seed, epoch=epoch, repeat_batches=repeat_batches)
    return _finish(dataset, with_index)


def _finish(dataset, with_index: bool):
    if not with_index:
        dataset = dataset.map(lambda images, labels, index: (images, labels))
    # tf.data's autotuner, left on, cost the model a fifth of its speed on 2 cores (ResNet50
    # fed from JPEGs: 18.5 images/s against 23.5 without it and 23.8 from memory, measured
    # with bench/extract_throughput.py). Without it, AUTOTUNE means one decoding thread per core
    # and a fixed prefetch buffer, enough to keep decoding ahead of any of the backbones.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)

