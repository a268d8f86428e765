"""The augmenter: Keras preprocessing layers applied to training batches inside `tf.data`.

Randomness comes from a seed given with each batch (see `tlcli.pipeline.image_dataset`), not
from the layers' own seed generators: those keep their state in a variable that parallel
`tf.data` calls update in whatever order the threads run, so the same --seed gave different
images from run to run (measured here: 36 to 60 of 64 batches differed). Drawing every random
number from the batch's seed keeps the pipeline parallel and the result repeatable.
"""

from __future__ import annotations

from tlcli.augment import AugmentConfig
from tlcli.runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

_FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}


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
        self.geometric = []  # Keras layers, applied in this order after the crop
        self.colour = []
        if config.flip != "none":
            self.geometric.append(keras.layers.RandomFlip(_FLIP_MODES[config.flip]))
        if config.rotation > 0:
            self.geometric.append(keras.layers.RandomRotation(config.rotation))
        if config.zoom > 0:
            # A negative height factor zooms in, a positive one out; width follows (same aspect).
            self.geometric.append(keras.layers.RandomZoom((-config.zoom, config.zoom)))
        if config.translation > 0:
            self.geometric.append(keras.layers.RandomTranslation(config.translation, config.translation))
        if config.brightness > 0:
            self.colour.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255)))
        if config.contrast > 0:
            self.colour.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255)))
        if config.saturation > 0:
            # Keras maps a factor f to a saturation scale f / (1 - f): 0.5 leaves images alone.
            # It clips the saturation channel, always in [0, 1], to value_range (the HSV round
            # trip itself works on any pixel scale), so (0, 1) is right for [0, 255] images.
            half = config.saturation / 2
            self.colour.append(
                keras.layers.RandomSaturation((0.5 - half, min(0.5 + half, 0.999)), value_range=(0, 1))
            )
        if config.hue > 0:
            self.colour.append(keras.layers.RandomHue(config.hue, value_range=(0, 255)))

    def __call__(self, images, batch_seed):
        seeds = _BatchSeeds(
            tf.random.experimental.stateless_fold_in(tf.cast(batch_seed, tf.int64), self.seed)
        )
        images = tf.cast(images, tf.float32)
        if self.config.crop > 0:
            images = self._crop_and_resize(images, seeds)
        for layer in self.geometric + self.colour:
            transformation = layer.get_random_transformation(images, training=True, seed=seeds)
            images = layer.transform_images(images, transformation, training=True)
        if self.config.noise > 0:
            # What keras.layers.GaussianNoise does, with the batch's seed and a stddev in pixels.
            images = images + keras.random.normal(
                tf.shape(images), stddev=self.config.noise * 255.0, seed=seeds
            )
        return tf.clip_by_value(images, 0.0, 255.0)

    def _crop_and_resize(self, images, seeds):
        """A random square-proportioned box per image, at least (1 - crop) of each side, resized back.

        keras.layers.RandomCrop picks one box for the whole batch and returns a smaller image;
        this picks one per image and keeps the input size.
        """
        shape = tf.shape(images)
        batch_size = shape[0]
        side = keras.random.uniform((batch_size, 1), 1.0 - self.config.crop, 1.0, seed=seeds)
        top = keras.random.uniform((batch_size, 1), 0.0, 1.0, seed=seeds) * (1.0 - side)
        left = keras.random.uniform((batch_size, 1), 0.0, 1.0, seed=seeds) * (1.0 - side)
        boxes = tf.concat([top, left, top + side, left + side], axis=1)
        cropped = tf.image.crop_and_resize(
            images, boxes, tf.range(batch_size), crop_size=shape[1:3], method="bilinear"
        )
        cropped.set_shape(images.shape)
        return cropped
