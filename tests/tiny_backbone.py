"""TinyNet: the backbone the fast tests train on, a registered row of tlcli's table.

Three blocks of convolution, BatchNormalization and pooling, about 18,000 parameters: every
workflow (train, finetune with stages and the stage cache, lr-find, tune, evaluate, calibrate,
explain, predict, export, extract) runs through it in a second or two, where VGG16 at 32 px has
14.7 million parameters. Its BatchNormalization layers let the tests check that fine-tuning keeps
them in inference mode. Random weights give features of about 0.1 to 1, as trained ones do.

Only the tests register it (conftest.py in-process, child_site/sitecustomize.py in the processes
they start), so it is never in `tlcli models` or a user's choice of --model.
"""

from __future__ import annotations

from tlcli.models.backbones import BACKBONES, BackboneSpec, Block

NAME = "tinynet"
FILTERS = (8, 16, 32)

TINY = BackboneSpec(
    name=NAME,
    display_name="TinyNet",
    module=__name__,
    constructor="TinyNet",
    preprocessing="tf",
    default_size=32,
    min_size=16,
    max_size=512,
    feature_size=FILTERS[-1],
    layer_count=1 + 5 * len(FILTERS),
    weights_file="tinynet_notop.h5",
    blocks=tuple(Block(f"block{n}", first_layer=f"block{n}_conv1") for n in range(1, len(FILTERS) + 1)),
    last_conv_layer=f"block{len(FILTERS)}_conv2",
)


def register() -> None:
    """Add TinyNet to tlcli's backbone table (once per process)."""
    BACKBONES.setdefault(NAME, TINY)


def preprocess_input(pixels):
    """[0, 255] -> [-1, 1], as Inception and Xception preprocess ("tf")."""
    return pixels / 127.5 - 1.0


def TinyNet(include_top: bool = False, weights=None, input_shape=None, **_):
    """Built as a Keras application is: without a top, from `weights` (None, "imagenet" or a file)."""
    from tlcli.runtime import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for number, filters in enumerate(FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", name=f"block{number}_conv1")(x)
        x = layers.BatchNormalization(name=f"block{number}_bn")(x)
        x = layers.Activation("relu", name=f"block{number}_relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{number}_conv2")(x)
        x = layers.MaxPooling2D(2, name=f"block{number}_pool")(x)
    model = keras.Model(inputs, x, name=NAME)
    if weights == "imagenet":
        # What Keras raises when a download fails, so tlcli's offline message is tested here too.
        raise Exception(f"URL fetch failure on https://example.invalid/{TINY.weights_file}: 404 -- no such weights")
    if weights is not None:
        model.load_weights(weights)
    return model
