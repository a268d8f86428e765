"""Building tlcli's models: image -> backbone preprocessing -> frozen backbone -> pooling -> head."""

from __future__ import annotations

from tlcli.models.backbones import BackboneSpec
from tlcli.models.weights import WeightsSource, build_base
from tlcli.runtime import import_keras

keras = import_keras()

from tlcli.models.layers import BackbonePreprocessing, Standardization  # noqa: E402  (needs Keras imported quietly)

STANDARDIZATION = "standardization"


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


def build_head(
    feature_shape: tuple[int, ...],
    num_classes: int,
    dense: tuple[int, ...] = (),
    activation: str = "relu",
    dropout: float = 0.0,
    l2: float = 0.0,
    multi_label: bool = False,
):
    """The new classifier on top of the pooled features:
    standardization -> [dense -> dropout]* -> dropout -> softmax (sigmoid with `multi_label`:
    one independent probability per label).

    The standardization's statistics start as the identity; `set_feature_statistics` fills them
    in from the training features. `l2` is a coupled L2 penalty on the kernels (AdamW's
    decoupled decay lives in the optimiser).
    """
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers = [
        keras.Input(shape=feature_shape, name="features"),
        # float32 under mixed precision too: raw features can be large, their spread small.
        Standardization(dtype="float32", name=STANDARDIZATION),
    ]
    for index, units in enumerate(dense, start=1):
        layers.append(
            keras.layers.Dense(
                units, activation=activation, kernel_regularizer=regularizer, name=f"dense_{index}"
            )
        )
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{index}"))
    if dropout > 0 and not dense:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    # float32 output even under mixed precision, so softmax and the loss stay accurate.
    layers.append(
        keras.layers.Dense(
            num_classes,
            activation="sigmoid" if multi_label else "softmax",
            kernel_regularizer=regularizer,
            dtype="float32",
            name="predictions",
        )
    )
    return keras.Sequential(layers, name="head")


def build_classifier(spec: BackboneSpec, image_size: int, base, head, pooling: str):
    """RGB images in [0, 255] -> class probabilities, with the base frozen."""
    base.trainable = False
    inputs = image_input(image_size)
    features = backbone_features(inputs, spec, base, pooling)
    return keras.Model(inputs, head(features), name=f"{spec.name}_classifier")


def set_feature_statistics(head, mean, std) -> None:
    """Give the head's standardization the training features' mean and standard deviation."""
    head.get_layer(STANDARDIZATION).set_weights([mean, std])


def is_multi_label(model) -> bool:
    """Whether a classifier or head ends in sigmoids (multi-label) rather than a softmax."""
    layer = find_predictions(model)
    return layer is not None and keras.activations.serialize(layer.activation) == "sigmoid"


def find_predictions(model):
    """The "predictions" Dense layer of a classifier or head (in a nested head too), or None."""
    for layer in getattr(model, "layers", ()):
        if layer.name == "predictions":
            return layer
        found = find_predictions(layer)
        if found is not None:
            return found
    return None
