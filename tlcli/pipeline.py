"""The one `tf.data` pipeline that serves training, evaluation, prediction and extraction.

Images are decoded and resized in parallel inside the pipeline, batched and prefetched, so
decoding overlaps with the model's compute. The pipeline streams file paths, never a list of
decoded images, so memory does not grow with the dataset. Evaluation, prediction and export
never augment: augmentation, when asked for, is mapped over training batches only.
"""

from __future__ import annotations

from typing import Sequence

from tlcli.data import Sample
from tlcli.images import read_rgb
from tlcli.runtime import import_tensorflow

tf = import_tensorflow()

_JPEG_RATIOS = (1, 2, 4, 8)


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
    return tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)


def _load(path, needs_pil, image_size: int):
    def with_pillow():
        image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
        return resize(image, image_size)

    return tf.cond(
        needs_pil, with_pillow, lambda: decode_image(tf.io.read_file(path), image_size)
    )


def image_dataset(
    samples: Sequence[Sample],
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    with_index: bool = False,
    augment=None,
    shard: tuple[int, int] = (1, 0),
):
    """Batches of (images, labels), or (images, labels, indices) with `with_index`.

    `shard=(count, index)` keeps every count-th file, after the seeded shuffle and before
    decoding, so that workers sharing one shuffle order read disjoint files.

    `indices` are positions in `samples`: a file that passed the checks but still fails to
    decode is dropped alone (errors are ignored per image, before batching), and the indices
    say which images a batch holds. `augment(images, batch_seed)` (see `tlcli.augment`) is
    mapped over the batches, after decoding, when given.
    """
    paths = [str(sample.path) for sample in samples]
    labels = [sample.label for sample in samples]
    needs_pil = [sample.needs_pil for sample in samples]
    indices = list(range(len(samples)))
    dataset = tf.data.Dataset.from_tensor_slices((
        tf.constant(paths, tf.string, shape=[len(paths)]),
        tf.constant(labels, tf.int32, shape=[len(labels)]),
        tf.constant(needs_pil, tf.bool, shape=[len(needs_pil)]),
        tf.constant(indices, tf.int64, shape=[len(indices)]),
    ))
    if shuffle:
        dataset = dataset.shuffle(max(1, len(samples)), seed=seed, reshuffle_each_iteration=True)
    if shard[0] > 1:
        dataset = dataset.shard(*shard)
    dataset = dataset.map(
        lambda path, label, pil, index: (_load(path, pil, image_size), label, index),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.ignore_errors()
    dataset = dataset.batch(batch_size)
    if augment is not None:
        # One seed per batch from a seeded stream that differs each epoch: parallel calls share
        # no random state, so augmentation repeats exactly under the same seed.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, batch_seeds).map(
            lambda batch, batch_seed: (augment(batch[0], batch_seed), batch[1], batch[2]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    if not with_index:
        dataset = dataset.map(lambda images, labels, index: (images, labels))
    # tf.data's autotuner, left on, cost the model a fifth of its speed on 2 cores (ResNet50
    # fed from JPEGs: 18.5 images/s against 23.5 without it and 23.8 from memory, measured
    # with bench/extract_throughput.py). Without it, AUTOTUNE means one decoding thread per core
    # and a fixed prefetch buffer, enough to keep decoding ahead of any of the backbones.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)
