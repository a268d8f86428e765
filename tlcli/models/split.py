"""A classifier cut in two where fine-tuning's frozen part ends.

A fine-tuning stage trains the backbone from some layer to the top. Everything below is frozen,
runs in inference mode and sees no augmentation, so its output for an image is the same in every
epoch: it can be computed once (`lower`) and the stage trained on it (`upper`). The cut must be
one tensor that everything above depends on alone: the start of a block in the backbone table
(ResNet's and Xception's residual blocks take their shortcut from that same tensor, and
InceptionV3's blocks begin after a concatenation). `upper` shares the classifier's layers, so
training it trains the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlcli.models.backbones import BackboneSpec
from tlcli.runtime import import_keras

keras = import_keras()


@dataclass(frozen=True)
class Split:
    boundary: str  # the layer whose output is the cut
    lower: object  # keras.Model: images -> the cut (frozen)
    upper: object  # keras.Model: the cut -> the classifier's output, sharing its layers
    frozen_share: float  # of the backbone's multiply-adds, computed below the cut
    row_shape: tuple[int, ...]  # one image's output at the cut
    dtype: str


def block_start(base, block) -> int:
    """Index into base.layers of a block's first layer."""
    names = [layer.name for layer in base.layers]
    return names.index(block.first_layer) if block.first_layer else names.index(block.after_layer) + 1


def block_cut(base, block):
    """The one tensor a block starts from (None when its first layer takes several)."""
    if block.after_layer:
        return base.get_layer(block.after_layer).output
    cut = base.get_layer(block.first_layer).input
    return None if isinstance(cut, (list, tuple)) else cut


def split_classifier(model, base, spec: BackboneSpec, start: int) -> Split | None:
    """The classifier cut at the highest block boundary at or below base.layers[start] (layers
    between the cut and `start` stay frozen, above it); None when no block starts at or below
    `start`, or the classifier is not the chain image -> layers -> base -> layers that tlcli builds."""
    chain = _chain_around(model, base)
    if chain is None:
        return None
    before, after = chain
    blocks = [block for block in spec.blocks if block_start(base, block) <= start]
    for block in reversed(blocks):
        cut = block_cut(base, block)
        if cut is None:
            continue
        try:
            top = keras.Model(cut, base.output, name=f"{base.name}_from_{block.name}")
        except ValueError:  # something above the cut reads a tensor from below it
            continue
        if _trainable_outside(base, top):
            continue
        return _split(model, base, before, after, top, cut)
    return None


def _split(model, base, before, after, top, cut) -> Split:
    images = keras.Input(shape=model.input.shape[1:], dtype=model.input.dtype, name="image")
    x = images
    for layer in before:
        x = layer(x)
    bottom = keras.Model(base.inputs, cut, name=f"{base.name}_to_{cut._keras_history.operation.name}")
    lower = keras.Model(images, bottom(x, training=False), name="frozen_lower")
    boundary = keras.Input(shape=cut.shape[1:], dtype=cut.dtype, name="cut")
    # training=False, as in the classifier: BatchNormalization keeps its statistics.
    y = top(boundary, training=False)
    for layer in after:
        y = layer(y)
    upper = keras.Model(boundary, y, name="unfrozen_upper")
    top_layers = {id(layer) for layer in top.layers}
    costs = [(multiply_adds(layer), id(layer) in top_layers) for layer in base.layers]
    total = sum(cost for cost, _ in costs)
    frozen = sum(cost for cost, above in costs if not above)
    return Split(cut._keras_history.operation.name, lower, upper, frozen / total if total else 0.0,
                 tuple(int(size) for size in cut.shape[1:]), str(cut.dtype))


def _chain_around(model, base):
    """(layers before the base, layers after it) when the classifier is a plain chain of them,
    read from its own graph (a split adds calls of these layers, and so nodes, of its own)."""
    chain, tensor = [], model.outputs[0]
    while tensor is not model.inputs[0]:
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if len(node.input_tensors) != 1 or len(node.output_tensors) != 1:
            return None
        chain.append(layer)
        tensor = node.input_tensors[0]
    chain.reverse()
    if base not in chain:
        return None
    position = chain.index(base)
    return chain[:position], chain[position + 1:]


def _trainable_outside(base, top) -> bool:
    """Whether a layer with trainable weights lies below the cut (the cut would freeze it)."""
    above = {id(layer) for layer in top.layers}
    return any(layer.trainable_weights and id(layer) not in above for layer in base.layers)


def multiply_adds(layer) -> int:
    """Multiply-adds of one call of a convolution or dense layer on one image (0 for the rest)."""
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                              keras.layers.Dense)):
        return 0
    inputs = int(layer.input.shape[-1])
    positions = int(np.prod([int(size) for size in layer.output.shape[1:-1]]))
    if isinstance(layer, keras.layers.Dense):
        return positions * inputs * layer.units
    window = int(np.prod(layer.kernel_size))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return positions * window * inputs * layer.depth_multiplier
    if isinstance(layer, keras.layers.SeparableConv2D):
        middle = inputs * layer.depth_multiplier
        return positions * (window * middle + middle * layer.filters)
    return positions * window * inputs * layer.filters // layer.groups
