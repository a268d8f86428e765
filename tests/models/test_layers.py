"""tlcli's own Keras layers: what each computes, by hand in NumPy, and that a model holding them
saves and loads again in Keras's safe mode with the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.models.layers import BackbonePreprocessing, Standardization, Temperature


def test_standardization_subtracts_the_mean_and_divides_by_the_standard_deviation():
    rng = np.random.default_rng(0)
    layer = Standardization()
    features = rng.normal(5, 3, (4, 6)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(features)), features)  # the identity until set
    mean, std = rng.normal(size=6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
    layer.set_weights([mean, std])
    np.testing.assert_allclose(np.asarray(layer(features)), (features - mean) / std, rtol=1e-6)
    assert layer.trainable_weights == []  # the statistics are fixed, never trained


def test_temperature_softens_or_sharpens_the_probabilities_and_keeps_the_top_class():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5, 4))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    for temperature in (0.5, 1.0, 2.5):
        by_hand = np.exp(logits / temperature)
        by_hand /= by_hand.sum(axis=1, keepdims=True)
        scaled = np.asarray(Temperature(temperature)(probabilities))
        np.testing.assert_allclose(scaled, by_hand, rtol=1e-4, atol=1e-6)
        assert (scaled.argmax(axis=1) == logits.argmax(axis=1)).all()
    assert (np.asarray(Temperature(2.5)(probabilities)).max(axis=1) < probabilities.max(axis=1)).all()


def test_a_model_of_tlclis_layers_saves_and_loads_in_safe_mode_with_the_same_outputs(tmp_path):
    import keras

    pixels = np.random.default_rng(2).uniform(0, 255, (3, 4, 4, 3)).astype(np.float32)
    inputs = keras.Input((4, 4, 3))
    features = keras.layers.Flatten()(BackbonePreprocessing("vgg16", name="preprocessing")(inputs))
    standardization = Standardization(name="standardization")
    logits = keras.layers.Dense(3, activation="softmax")(standardization(features))
    model = keras.Model(inputs, Temperature(1.7, name="temperature")(logits))
    standardization.set_weights([np.full(48, 3.0, np.float32), np.full(48, 40.0, np.float32)])
    model.save(tmp_path / "model.keras")

    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(np.asarray(loaded(pixels)), np.asarray(model(pixels)))
    assert loaded.get_layer("preprocessing").backbone == "vgg16"
    assert loaded.get_layer("temperature").temperature == pytest.approx(1.7)
    np.testing.assert_array_equal(loaded.get_layer("standardization").get_weights()[1], 40.0)
