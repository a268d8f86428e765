"""The Keras Applications backbones, as one table every other module asks.

The classic four (VGG16, ResNet50, InceptionV3, Xception) are the ones the project is built around
and tested in full; EfficientNetV2, ConvNeXt and MobileNetV3 are newer rows that do their own
rescaling inside the Keras model.

Importing this module is cheap: constructors and preprocessing functions are named here and
resolved from `keras.applications` only when a model is built.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from tlcli.errors import TlcliError


@dataclass(frozen=True)
class Block:
    """Where a named block of a backbone begins in `base.layers`.

    Most blocks begin at a layer with a stable name. InceptionV3's inner layers are named by
    Keras's global counter (`conv2d_80` in one process, `conv2d_174` in the next), so its
    blocks are anchored on the stable name of the layer that ends the block before.

    Every block begins at one tensor that everything above it depends on alone (a residual
    block's shortcut starts from that same tensor), so fine-tuning can compute what lies below
    a block once (`tlcli.models.split`); tests/models/test_split.py checks each block.
    """

    name: str
    first_layer: str | None = None
    after_layer: str | None = None


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    display_name: str
    module: str  # the keras.applications module holding the constructor and preprocess_input
    constructor: str
    # "caffe": RGB->BGR, minus ImageNet means; "tf": scaled to [-1, 1]; "torch": scaled to [0, 1],
    # then ImageNet mean and standard deviation per channel.
    preprocessing: str
    default_size: int
    min_size: int
    max_size: int  # see MAX_FEATURE_MAP_BYTES
    feature_size: int
    layer_count: int  # len(base.layers) without the top, whatever the image size: bounds a stage's count
    weights_file: str  # the no-top ImageNet weights file Keras downloads into its cache
    blocks: tuple[Block, ...]
    # The output of the last convolutional block, the finest map that still sees the whole image:
    # `tlcli explain` weighs it by its gradient (Grad-CAM). A stable layer name, or None for the
    # backbone's own output when its last layer is named by Keras's global counter (MobileNetV3's
    # final activation, ConvNeXt's final LayerNormalization).
    last_conv_layer: str | None
    # True when the Keras model rescales [0, 255] pixels itself (its include_preprocessing, on by
    # default) and the module's preprocess_input is the identity: preprocessing then happens once,
    # inside the backbone, and `preprocessing` names what those layers compute.
    preprocessing_in_backbone: bool = False
    classic: bool = False  # one of the four backbones the project is built and fully tested around

    def explain_layer(self, base):
        """The layer of `base` whose output `tlcli explain` maps."""
        return base.get_layer(self.last_conv_layer) if self.last_conv_layer else base.layers[-1]

    def build_constructor(self):
        from tlcli.runtime import import_keras

        keras = import_keras()
        # MobileNetV3Small/Large live in keras.applications itself, not in their module.
        module = importlib.import_module(self.module)
        return getattr(module, self.constructor, None) or getattr(keras.applications, self.constructor)

    def preprocess_function(self):
        from tlcli.runtime import import_keras

        import_keras()
        return importlib.import_module(self.module).preprocess_input

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(block.name for block in self.blocks)

    def block(self, name: str) -> Block:
        for block in self.blocks:
            if block.name == name:
                return block
        raise TlcliError(
            f"{name!r} is not a block of {self.name} (blocks: {', '.join(self.block_names)})."
        )


def _numbered(prefix: str, numbers, first_layer: str) -> tuple[Block, ...]:
    return tuple(
        Block(f"{prefix}{n}", first_layer=first_layer.format(prefix=prefix, n=n)) for n in numbers
    )


# The largest image side each backbone accepts is where one image's largest feature map (float32)
# reaches 256 MiB, rounded down to a multiple of 32: a batch of 32 then needs 8 GiB for that one
# layer's output, and memory grows with the square of the side (VGG16 at 10000 px took 22.7 GB
# within 30 s). Measured from the output shapes of each backbone: the largest feature map holds
# 64 floats per input pixel in VGG16 (block1), 16.3 in ResNet50 (pool1_pad), 15.6 in
# InceptionV3 (its third convolution) and 31.3 in Xception (block2); 8 in EfficientNetV2B0, 12 in
# EfficientNetV2S, 24 in ConvNeXtTiny, 4.5 in MobileNetV3Small and 16.1 in MobileNetV3Large.
MAX_FEATURE_MAP_BYTES = 256 * 2**20

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="vgg16",
            display_name="VGG16",
            module="keras.applications.vgg16",
            constructor="VGG16",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            max_size=1024,
            feature_size=512,
            layer_count=19,
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            blocks=_numbered("block", range(1, 6), "{prefix}{n}_conv1"),
            last_conv_layer="block5_conv3",
            classic=True,
        ),
        BackboneSpec(
            name="resnet50",
            display_name="ResNet50",
            module="keras.applications.resnet50",
            constructor="ResNet50",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            max_size=2016,
            feature_size=2048,
            layer_count=175,
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            blocks=_numbered("conv", range(2, 6), "{prefix}{n}_block1_1_conv"),
            last_conv_layer="conv5_block3_out",
            classic=True,
        ),
        BackboneSpec(
            name="inceptionv3",
            display_name="InceptionV3",
            module="keras.applications.inception_v3",
            constructor="InceptionV3",
            preprocessing="tf",
            default_size=299,
            min_size=75,
            max_size=2048,
            feature_size=2048,
            layer_count=311,
            weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            blocks=tuple(Block(f"mixed{n}", after_layer=f"mixed{n - 1}") for n in range(1, 11)),
            last_conv_layer="mixed10",
            classic=True,
        ),
        BackboneSpec(
            name="xception",
            display_name="Xception",
            module="keras.applications.xception",
            constructor="Xception",
            preprocessing="tf",
            default_size=299,
            min_size=71,
            max_size=1440,
            feature_size=2048,
            layer_count=132,
            weights_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            blocks=(
                Block("block1", first_layer="block1_conv1"),
                Block("block2", first_layer="block2_sepconv1"),
                *_numbered("block", range(3, 14), "{prefix}{n}_sepconv1_act"),
                Block("block14", first_layer="block14_sepconv1"),
            ),
            last_conv_layer="block14_sepconv2_act",
            classic=True,
        ),
        BackboneSpec(
            name="efficientnetv2b0",
            display_name="EfficientNetV2B0",
            module="keras.applications.efficientnet_v2",
            constructor="EfficientNetV2B0",
            preprocessing="torch",  # Rescaling(1/255) and Normalization (ImageNet mean, std) in the model
            default_size=224,
            min_size=32,
            max_size=2880,
            feature_size=1280,
            layer_count=270,
            weights_file="efficientnetv2-b0_notop.h5",
            blocks=(
                Block("block1", first_layer="block1a_project_conv"),  # expansion ratio 1: no expand conv
                *_numbered("block", range(2, 7), "{prefix}{n}a_expand_conv"),
                Block("top", first_layer="top_conv"),
            ),
            last_conv_layer="top_activation",
            preprocessing_in_backbone=True,
        ),
        BackboneSpec(
            name="efficientnetv2s",
            display_name="EfficientNetV2S",
            module="keras.applications.efficientnet_v2",
            constructor="EfficientNetV2S",
            preprocessing="tf",  # Rescaling(1/128, offset -1) in the model: [-1, 0.99]
            default_size=384,
            min_size=32,
            max_size=2336,
            feature_size=1280,
            layer_count=513,
            weights_file="efficientnetv2-s_notop.h5",
            blocks=(
                Block("block1", first_layer="block1a_project_conv"),
                *_numbered("block", range(2, 7), "{prefix}{n}a_expand_conv"),
                Block("top", first_layer="top_conv"),
            ),
            last_conv_layer="top_activation",
            preprocessing_in_backbone=True,
        ),
        BackboneSpec(
            name="convnexttiny",
            display_name="ConvNeXtTiny",
            module="keras.applications.convnext",
            constructor="ConvNeXtTiny",
            preprocessing="torch",  # Normalization (ImageNet mean and std times 255) in the model
            default_size=224,
            min_size=32,
            max_size=1664,
            feature_size=768,
            layer_count=133,
            weights_file="convnext_tiny_notop.h5",
            blocks=(
                Block("stage0", first_layer="convnext_tiny_stage_0_block_0_depthwise_conv"),
                # Each later stage begins with its downsampling (LayerNormalization, strided conv).
                *(Block(f"stage{n}", first_layer=f"convnext_tiny_downsampling_block_{n - 1}") for n in range(1, 4)),
            ),
            # The last block's residual sum is an operation, not a layer; the model's output (the
            # final LayerNormalization of that sum) is the last block's map.
            last_conv_layer=None,
            preprocessing_in_backbone=True,
        ),
        BackboneSpec(
            name="mobilenetv3small",
            display_name="MobileNetV3Small",
            module="keras.applications.mobilenet_v3",
            constructor="MobileNetV3Small",
            preprocessing="tf",  # Rescaling(1/127.5, offset -1) in the model
            default_size=224,
            min_size=32,
            max_size=3840,
            feature_size=576,
            layer_count=157,
            weights_file="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            blocks=(
                Block("expanded_conv", first_layer="expanded_conv_depthwise_pad"),
                *_numbered("expanded_conv_", range(1, 11), "{prefix}{n}_expand"),
                Block("conv_1", first_layer="conv_1"),
            ),
            last_conv_layer=None,  # conv_1's hard-swish activation is named by the global counter
            preprocessing_in_backbone=True,
        ),
        BackboneSpec(
            name="mobilenetv3large",
            display_name="MobileNetV3Large",
            module="keras.applications.mobilenet_v3",
            constructor="MobileNetV3Large",
            preprocessing="tf",  # Rescaling(1/127.5, offset -1) in the model
            default_size=224,
            min_size=32,
            max_size=2016,
            feature_size=960,
            layer_count=187,
            weights_file="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
            blocks=(
                Block("expanded_conv", first_layer="expanded_conv_depthwise"),
                *_numbered("expanded_conv_", range(1, 15), "{prefix}{n}_expand"),
                Block("conv_1", first_layer="conv_1"),
            ),
            last_conv_layer=None,
            preprocessing_in_backbone=True,
        ),
    )
}

MODEL_NAMES = tuple(BACKBONES)
CLASSIC_NAMES = tuple(name for name, spec in BACKBONES.items() if spec.classic)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name.lower()]
    except KeyError:
        raise TlcliError(
            f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_NAMES)}."
        ) from None


def resolve_image_size(spec: BackboneSpec, image_size: int | None) -> int:
    """The image side length to use: the backbone's native size unless one is given."""
    if image_size is None:
        return spec.default_size
    if image_size < spec.min_size:
        raise TlcliError(
            f"--image-size {image_size} is too small for {spec.name} (minimum {spec.min_size}). "
            f"Use --image-size {spec.min_size} or more."
        )
    if image_size > spec.max_size:
        needed = MAX_FEATURE_MAP_BYTES * (image_size / spec.max_size) ** 2 / 2**30
        raise TlcliError(
            f"--image-size {image_size} is too large for {spec.name} (maximum {spec.max_size}): one image "
            f"would need about {needed:.1f} GiB for a single layer's output. Use --image-size {spec.max_size} or less."
        )
    return image_size


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def cached_weights_path(spec: BackboneSpec) -> Path | None:
    path = keras_cache_dir() / spec.weights_file
    return path if path.is_file() else None
