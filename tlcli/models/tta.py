"""Test-time augmentation: fixed views of each image, classified together in one forward pass.

A view set is a short, deterministic list of views of the model's input, the resized image
batch (float32 RGB in [0, 255], image_size x image_size). View 0 is always the image as it is,
so the single-view probabilities come out of the same pass as the averaged ones.

    flip    2 views: the image, its horizontal mirror
    crops  10 views: the image and its four corner crops of 90% of each side (resized back to
           the full size, bilinear), each as it is and mirrored; the first two are flip's

Only mirroring and cropping: nothing that changes the colours or turns the image, which would
take the model far from its training images. The module imports no TensorFlow until a model
is wrapped, so the commands read the view sets' names for `--help` without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlcli.runtime import import_tensorflow

CROP_FRACTION = 0.9  # the side of a corner crop, as a share of the image's side
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class View:
    """One deterministic view: a corner crop (None: the whole image), then maybe mirrored."""

    corner: str | None = None
    mirrored: bool = False

    @property
    def name(self) -> str:
        what = "image" if self.corner is None else f"{self.corner} crop"
        return f"{what}, mirrored" if self.mirrored else what


@dataclass(frozen=True)
class ViewSet:
    name: str
    views: tuple[View, ...]
    meaning: str  # what the views are, for the user

    def describe(self) -> str:
        """`flip, 2 views: the image and its horizontal mirror`."""
        return f"{self.name}, {len(self.views)} views: {self.meaning}"


VIEW_SETS = {
    "flip": ViewSet("flip", (View(), View(mirrored=True)), "the image and its horizontal mirror"),
    "crops": ViewSet(
        "crops",
        (View(), View(mirrored=True),
         *(View(corner) for corner in CORNERS), *(View(corner, mirrored=True) for corner in CORNERS)),
        f"the image and its four corner crops of {CROP_FRACTION:.0%} of each side, resized back, "
        "each as it is and mirrored",
    ),
}
DEFAULT_VIEW_SET = "flip"


def view_images(images, view: View):
    """One view of a batch of images [batch, height, width, channels] of a known size."""
    tf = import_tensorflow()
    height, width = int(images.shape[1]), int(images.shape[2])
    if view.corner is not None:
        crop_height = max(1, round(CROP_FRACTION * height))
        crop_width = max(1, round(CROP_FRACTION * width))
        top = 0 if view.corner.startswith("top") else height - crop_height
        left = 0 if view.corner.endswith("left") else width - crop_width
        cropped = images[:, top:top + crop_height, left:left + crop_width, :]
        images = tf.image.resize(cropped, (height, width), method="bilinear")
    if view.mirrored:
        images = tf.reverse(images, axis=[2])
    return images


class MultiViewClassifier:
    """A classifier called on every view of its input at once, as a drop-in for the model.

    Called on pixels [batch, size, size, 3] like the model, it returns the probabilities of
    every view [batch, views, classes], or their mean over the views [batch, classes] with
    `average=True`. The views go through the model as one batch of views x batch images
    (view-major) and are split apart after, so a batch costs one forward pass.
    """

    def __init__(self, model, view_set: str, average: bool):
        self.model = model
        self.view_set = VIEW_SETS[view_set]
        self.average = average
        num_classes = int(model.output_shape[-1])
        self.output_shape = (None, num_classes) if average else (None, len(self.view_set.views), num_classes)

    def __call__(self, images, training: bool = False):
        tf = import_tensorflow()
        views = self.view_set.views
        batch_size = tf.shape(images)[0]
        stacked = tf.concat([view_images(images, view) for view in views], axis=0)
        probabilities = tf.cast(self.model(stacked, training=training), tf.float32)
        per_view = tf.reshape(probabilities, [len(views), batch_size, self.output_shape[-1]])
        if self.average:
            return tf.reduce_mean(per_view, axis=0)
        return tf.transpose(per_view, [1, 0, 2])
