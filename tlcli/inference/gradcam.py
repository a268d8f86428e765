"""Grad-CAM: where in an image a saved classifier found its evidence for a class.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the backbone's last convolutional
block (`BackboneSpec.last_conv_layer`) by the mean gradient of the class's score over it and
sums the channels: a coarse map, one cell per position of that block, of where the evidence
for the class lies. It runs on the model as saved, raw pixels in: the gradient
flows back through the head and the frozen or fine-tuned top of the backbone, with
BatchNormalization and dropout in inference mode, as in prediction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tlcli.errors import TlcliError
from tlcli.inference.heatmaps import Heatmap
from tlcli.models.backbones import BACKBONES, BackboneSpec
from tlcli.models.weights import keras_model_name_matches
from tlcli.runtime import import_keras


def find_backbone(model) -> tuple[object, BackboneSpec]:
    """The backbone inside a saved tlcli classifier, and its row of the backbone table."""
    for layer in model.layers:
        for spec in BACKBONES.values():
            if hasattr(layer, "get_layer") and keras_model_name_matches(layer.name, spec):
                return layer, spec
    raise TlcliError(
        f"{model.name} holds none of the backbones tlcli builds ({', '.join(BACKBONES)}), so it has no "
        "convolutional block to explain. Explain a model that tlcli train or finetune wrote."
    )


class GradCam:
    """Grad-CAM maps of a saved tlcli classifier: image -> preprocessing -> backbone -> pooling ->
    head (its last layer a softmax Dense, or a multi-label run's sigmoid Dense, whose logits are
    explained) -> temperature, if calibrated."""

    def __init__(self, model):
        keras = import_keras()
        import tensorflow as tf

        base, self.backbone = find_backbone(model)
        block = self.backbone.explain_layer(base)
        self.layer_name = block.name
        # The base cut in two at the block, so that the tape records only what follows it: the
        # gradient is taken at the block's output, and nothing below it needs one.
        to_block = keras.Model(base.inputs, block.output)
        from_block = keras.Model(block.output, base.output) if block.output is not base.output else None
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        before, after = layers[: layers.index(base)], _flatten(layers[layers.index(base) + 1 :])
        classifier, sigmoid = _last_classifier_dense(after, model.name)
        to_logits, to_output = after[: after.index(classifier)], after[after.index(classifier) + 1 :]

        def maps(images, classes):
            x = images
            for layer in before:
                x = layer(x, training=False)
            block_output = to_block(x, training=False)
            with tf.GradientTape() as tape:
                tape.watch(block_output)
                x = from_block(block_output, training=False) if from_block is not None else block_output
                for layer in to_logits:
                    x = layer(x, training=False)
                logits = tf.cast(tf.matmul(x, classifier.kernel) + classifier.bias, tf.float32)
                probabilities = tf.sigmoid(logits) if sigmoid else tf.nn.softmax(logits)
                for layer in to_output:  # a temperature changes the probabilities, not the map's shape
                    probabilities = layer(probabilities, training=False)
                targets = tf.where(classes >= 0, classes, tf.argmax(probabilities, axis=-1, output_type=tf.int32))
                # The class's logit against the mean logit: softmax ignores a shift shared by all
                # logits, and a solved two-class head keeps one logit at zero, so only this is evidence.
                # A sigmoid label's own logit is its evidence: no other label's shifts it.
                margins = logits if sigmoid else logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
                score = tf.reduce_sum(tf.gather(margins, targets, batch_dims=1))
            block_output = tf.cast(block_output, tf.float32)
            gradients = tf.cast(tape.gradient(score, block_output), tf.float32)
            channel_weights = tf.reduce_mean(gradients, axis=(1, 2))
            heat = tf.einsum("bhwc,bc->bhw", block_output, channel_weights)
            # Scaled from the cell that supports the class least (0) to the one that supports it
            # most (1). The paper keeps only cells that raise the score in absolute terms (a ReLU);
            # but a head on standardised features reads evidence against each feature's average,
            # so that map is often blank, while the cells' order, which the scaling keeps, is not.
            lowest = tf.reduce_min(heat, axis=(1, 2), keepdims=True)
            heat = tf.math.divide_no_nan(heat - lowest, tf.reduce_max(heat, axis=(1, 2), keepdims=True) - lowest)
            return probabilities, targets, heat

        self._maps = tf.function(maps, reduce_retracing=True)

    def __call__(self, images, classes: Sequence[int]) -> tuple[np.ndarray, list[Heatmap]]:
        """(probabilities, a Heatmap per image) for a batch of images in [0, 255], each explained
        for its entry of `classes`: a class index, or PREDICTED."""
        import tensorflow as tf

        probabilities, targets, heat = self._maps(
            tf.convert_to_tensor(images, tf.float32), tf.constant(classes, tf.int32)
        )
        probabilities, targets, heat = probabilities.numpy(), targets.numpy(), heat.numpy()
        return probabilities, [
            Heatmap(int(target), float(row[target]), values)
            for row, target, values in zip(probabilities, targets, heat)
        ]


def _flatten(layers) -> list:
    """Sequential models (the head) opened into their layers, in order."""
    keras = import_keras()
    flat = []
    for layer in layers:
        flat.extend(_flatten(layer.layers) if isinstance(layer, keras.Sequential) else [layer])
    return flat


def _last_classifier_dense(layers, model_name: str):
    """(the last Dense layer, whether it is a multi-label sigmoid) when it is a classifier tlcli builds."""
    keras = import_keras()
    for layer in reversed(layers):
        if isinstance(layer, keras.layers.Dense):
            activation = keras.activations.serialize(layer.activation)
            if activation in ("softmax", "keras.activations.softmax", "sigmoid", "keras.activations.sigmoid"):
                return layer, "sigmoid" in activation
            break
    raise TlcliError(
        f"{model_name} does not end in the softmax (or multi-label sigmoid) classifier tlcli builds, so it has no "
        "class scores "
        "to explain. Explain a model that tlcli train or finetune wrote."
    )
