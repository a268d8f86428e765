"""Keras layers tlcli puts into the models it saves.

They are registered as serializable so a `.keras` file loads in Keras's safe mode (no Lambda
layers, no pickled code) in any process that has imported `tlcli`.
"""

from __future__ import annotations

from tlcli.runtime import import_keras

keras = import_keras()


@keras.saving.register_keras_serializable(package="tlcli")
class BackbonePreprocessing(keras.layers.Layer):
    """The backbone's own `preprocess_input`, inside the graph.

    Models saved or exported by tlcli therefore take raw RGB pixels in [0, 255], and nobody
    serving them has to know whether the backbone wanted caffe-style BGR means or [-1, 1].
    """

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        from tlcli.backbones import get_backbone

        self.backbone = backbone
        self._preprocess = get_backbone(backbone).preprocess_function()

    def call(self, inputs):
        return self._preprocess(keras.ops.cast(inputs, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}
