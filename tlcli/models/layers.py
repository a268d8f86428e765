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
        from tlcli.models.backbones import get_backbone

        self.backbone = backbone
        self._preprocess = get_backbone(backbone).preprocess_function()

    def call(self, inputs):
        return self._preprocess(keras.ops.cast(inputs, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="tlcli")
class Standardization(keras.layers.Layer):
    """(features - mean) / std with the training images' statistics, fixed and saved with the model.

    The head starts with it, so every head, solved or trained by gradient, sees features of
    unit scale whatever the backbone, and a served model needs nothing beside it. Unlike Keras's
    Normalization, the statistics are ordinary (non-trainable) weights read at every call, so
    `set_weights` and distribution strategies can never leave a stale copy behind.
    """

    def build(self, input_shape):
        size = (input_shape[-1],)
        self.mean = self.add_weight(name="mean", shape=size, initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=size, initializer="ones", trainable=False)

    def call(self, inputs):
        return (keras.ops.cast(inputs, self.compute_dtype) - self.mean) / self.std

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tlcli")
class Temperature(keras.layers.Layer):
    """Temperature scaling of a classifier's probabilities: softmax(log(p) / T).

    `tlcli calibrate` fits T on the validation images, so that a probability of 0.9 is right
    about 90% of the time; dividing every logit by one number never changes the top class.
    The log of a softmax is its logits up to a constant per row, which softmax ignores.
    """

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, inputs):
        probabilities = keras.ops.cast(inputs, "float32")
        return keras.ops.softmax(keras.ops.log(keras.ops.maximum(probabilities, 1e-12)) / self.temperature)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
