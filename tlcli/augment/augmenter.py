"""The augmenter: random changes to training batches inside `tf.data`.

Geometry is one warp per image (`tlcli.augment.geometry`); brightness and contrast are Keras's
layers; saturation and hue share one trip through HSV; noise is added last.

Randomness comes from a seed given with each batch (see `tlcli.data.pipeline.image_dataset`), not
from the layers' own seed generators: those keep their state in a variable that parallel
`tf.data` calls update in whatever order the threads run, so the same --seed gave different
images from run to run (measured here: 36 to 60 of 64 batches differed). Drawing every random
number from the batch's seed keeps the pipeline parallel and the result repeatable.
"""

from __future__ import annotations

from tlcli.augment.geometry import random_transforms, warp
from tlcli.augment.config import AugmentConfig
from tlcli.runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()


class _BatchSeeds(keras.random.SeedGenerator):
    """Hands each random draw of one batch its own seed, derived from the batch's seed.

    Keras's layers accept a SeedGenerator as `seed`; this one has no state variable: the n-th
    draw gets fold_in(batch_seed, n), fixed when the pipeline's function is traced.
    """

    def __init__(self, batch_seed):  # no super().__init__(): it would create a state variable
        self.name = "batch_seeds"
        self._batch_seed = batch_seed
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._batch_seed, self._draws)


class Augmenter:
    """(images, batch_seed) -> augmented images, float32 RGB in [0, 255], same shape."""

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.colour = []  # Keras layers, applied in this order after the geometry
        if config.brightness > 0:
            self.colour.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255)))
        if config.contrast > 0:
            self.colour.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255)))

    def __call__(self, images, batch_seed):
        seeds = _BatchSeeds(
            tf.random.experimental.stateless_fold_in(tf.cast(batch_seed, tf.int64), self.seed)
        )
        images = tf.cast(images, tf.float32)
        transforms = random_transforms(self.config, images, seeds)
        if transforms is not None:
            images = warp(images, transforms)
        for layer in self.colour:
            transformation = layer.get_random_transformation(images, training=True, seed=seeds)
            images = layer.transform_images(images, transformation, training=True)
        if self.config.saturation > 0 or self.config.hue > 0:
            images = self._adjust_saturation_and_hue(images, seeds)
        if self.config.noise > 0:
            # What keras.layers.GaussianNoise does, with the batch's seed and a stddev in pixels.
            images = images + keras.random.normal(
                tf.shape(images), stddev=self.config.noise * 255.0, seed=seeds
            )
        return tf.clip_by_value(images, 0.0, 255.0)

    def _adjust_saturation_and_hue(self, images, seeds):
        """What RandomSaturation and then RandomHue do, in one RGB -> HSV -> RGB round trip.

        Each Keras layer converts to HSV and back on its own; the conversions cost most of their
        time, and converting back and forth in between changes nothing.
        """
        batch_size = tf.shape(images)[0]
        hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
        if self.config.saturation > 0:
            # Keras maps a factor f to a saturation scale f / (1 - f): 0.5 leaves images alone,
            # and the scaled saturation is clipped to [0, 1].
            half = self.config.saturation / 2
            factor = keras.random.uniform(
                (batch_size, 1, 1), 0.5 - half, min(0.5 + half, 0.999), seed=seeds
            )
            scale = factor / (1.0 - factor + keras.config.epsilon())
            saturation = tf.clip_by_value(saturation * scale, 0.0, 1.0)
        if self.config.hue > 0:
            # RandomHue shifts by a random sign times U(0, hue) / 2: U(-hue / 2, hue / 2) in all.
            half = self.config.hue / 2
            hue = hue + keras.random.uniform((batch_size, 1, 1), -half, half, seed=seeds)
            hue = hue - tf.floor(hue)  # round the colour circle
        return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def build_augmenter(config: AugmentConfig, seed: int = 0):
    """A callable (images, batch_seed) -> images for `image_dataset(..., augment=...)`.

    Images are float32 RGB batches in [0, 255]; the result is clipped to [0, 255]. Returns None
    when `config` changes nothing, so the pipeline skips the step entirely.
    """
    if config.is_identity:
        return None
    return Augmenter(config, seed)
