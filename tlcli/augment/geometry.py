"""Crop, flip, rotation, zoom and translation as one projective warp per image.

Applied one after another, as Keras's layers do, the crop, rotation, zoom and translation each
resampled the whole image (and the flip copied it): the standard preset interpolated, and so
blurred, every image four times, taking about three times as long as the one warp does now.
Here each technique gives a 3x3 matrix per image, the matrices are multiplied, and
`ImageProjectiveTransformV3` samples the input once, bilinearly, filling outside the image by
reflection as the Keras layers do.

A matrix maps an output pixel (x, y, 1) to the input point sampled for it, the form the op
takes; applying A and then B samples through A @ B. The random draws follow the Keras layers
(`RandomFlip`, `RandomRotation`, `RandomZoom`, `RandomTranslation`) with tlcli's settings.
"""

from __future__ import annotations

import math

from tlcli.augment.config import AugmentConfig
from tlcli.runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()


def random_transforms(config: AugmentConfig, images, seeds):
    """One [batch, 8] row of `ImageProjectiveTransformV3` coefficients per image, or None.

    None when no geometric technique is on. `seeds` gives each random draw its seed.
    """
    shape = tf.shape(images)
    batch_size = shape[0]
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)

    def uniform(low, high):
        return keras.random.uniform((batch_size,), low, high, seed=seeds)

    matrices = []  # in the order the techniques apply
    if config.crop > 0:
        side = uniform(1.0 - config.crop, 1.0)
        top, left = uniform(0.0, 1.0) * (1.0 - side), uniform(0.0, 1.0) * (1.0 - side)
        matrices.append(_crop_matrix(side, top, left, height, width))
    if config.flip != "none":
        # RandomFlip draws one coin per image; "both" flips both ways on it (a half turn).
        flipped = uniform(0.0, 1.0) <= 0.5
        mirror = tf.where(flipped, -1.0, 1.0)
        keep = tf.ones_like(mirror)
        matrices.append(_scale_about_centre(
            mirror if config.flip in ("horizontal", "both") else keep,
            mirror if config.flip in ("vertical", "both") else keep,
            height, width,
        ))
    if config.rotation > 0:
        # RandomRotation's factor is a fraction of a full turn either way.
        turn = 2.0 * math.pi * config.rotation
        matrices.append(_rotation_matrix(uniform(-turn, turn), height, width))
    if config.zoom > 0:
        # RandomZoom((-zoom, zoom)) with the width following the height: above 1 zooms out.
        zoom = uniform(1.0 - config.zoom, 1.0 + config.zoom)
        matrices.append(_scale_about_centre(zoom, zoom, height, width))
    if config.translation > 0:
        shift_y = uniform(-config.translation, config.translation) * height
        shift_x = uniform(-config.translation, config.translation) * width
        matrices.append(_affine_matrix(1.0, 0.0, -shift_x, 0.0, 1.0, -shift_y, like=shift_x))
    if not matrices:
        return None
    combined = matrices[0]
    for matrix in matrices[1:]:
        combined = combined @ matrix
    return tf.reshape(combined, (-1, 9))[:, :8]  # affine: the last row stays (0, 0, 1)


def warp(images, transforms):
    """Sample each image once through its transform: bilinear, reflecting at the edges."""
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    warped.set_shape(images.shape)
    return warped


def _affine_matrix(a, b, c, d, e, f, like):
    """[batch, 3, 3] matrices [[a, b, c], [d, e, f], [0, 0, 1]]; scalars broadcast to `like`."""
    rows = [tf.broadcast_to(tf.cast(value, tf.float32), tf.shape(like)) for value in (a, b, c, d, e, f)]
    zero, one = tf.zeros_like(like), tf.ones_like(like)
    return tf.reshape(tf.stack(rows + [zero, zero, one], axis=-1), (-1, 3, 3))


def _crop_matrix(side, top, left, height, width):
    """The box (top, left, side: fractions of the image) stretched over the whole output.

    Pixel for pixel what `tf.image.crop_and_resize` samples for that box at the input's size.
    """
    return _affine_matrix(side, 0.0, left * (width - 1.0), 0.0, side, top * (height - 1.0), like=side)


def _scale_about_centre(scale_x, scale_y, height, width):
    centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    return _affine_matrix(
        scale_x, 0.0, centre_x * (1.0 - scale_x), 0.0, scale_y, centre_y * (1.0 - scale_y), like=scale_x
    )


def _rotation_matrix(angle, height, width):
    """A turn by `angle` radians about the image's centre, as RandomRotation builds it."""
    centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _affine_matrix(
        cos, -sin, centre_x - centre_x * cos + centre_y * sin,
        sin, cos, centre_y - centre_x * sin - centre_y * cos,
        like=angle,
    )
