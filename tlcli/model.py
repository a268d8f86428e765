"""Building tlcli's models: image -> backbone preprocessing -> frozen backbone -> pooling -> head."""

from __future__ import annotations

from tlcli.backbones import BackboneSpec
from tlcli.runtime import import_keras
from tlcli.weights import WeightsSource, build_base

keras = import_keras()

from tlcli.layers import BackbonePreprocessing  # noqa: E402  (needs Keras imported quietly)

POOLINGS = ("avg", "max", "flatten")


def pooling_layer(pooling: str):
    layers = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }
    return layers[pooling](name=f"{pooling}_pool")


def image_input(image_size: int):
    return keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")


def backbone_features(inputs, spec: BackboneSpec, base, pooling: str):
    """Raw RGB pixels -> the backbone's own preprocessing -> frozen backbone -> pooled features."""
    x = BackbonePreprocessing(spec.name, name="preprocessing")(inputs)
    # training=False keeps BatchNormalization in inference mode even when layers are later
    # unfrozen for fine-tuning, so its ImageNet statistics are not wrecked by small batches.
    x = base(x, training=False)
    return pooling_layer(pooling)(x)


def build_feature_extractor(
    spec: BackboneSpec, image_size: int, weights: WeightsSource, pooling: str = "avg"
):
    """A model mapping RGB images in [0, 255] to the backbone's pooled features."""
    base = build_base(spec, image_size, weights)
    base.trainable = False
    inputs = image_input(image_size)
    return keras.Model(inputs, backbone_features(inputs, spec, base, pooling), name=f"{spec.name}_features")
