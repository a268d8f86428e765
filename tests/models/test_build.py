"""Building tlcli's models: the head on pooled features, and the classifier around a frozen backbone,
each checked against the same computation by hand in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_backbone import TINY
from tlcli.models.build import (
    build_classifier,
    build_feature_extractor,
    build_head,
    find_predictions,
    is_multi_label,
    set_feature_statistics,
)
from tlcli.models.weights import WeightsSource, build_base


def _softmax(logits: np.ndarray) -> np.ndarray:
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _dense(head, name: str, inputs: np.ndarray) -> np.ndarray:
    kernel, bias = head.get_layer(name).get_weights()
    return inputs @ kernel + bias


@pytest.mark.parametrize("multi_label", [False, True], ids=["softmax", "sigmoid"])
def test_the_head_standardizes_the_features_then_classifies_them(multi_label):
    rng = np.random.default_rng(0)
    head = build_head((5,), 3, multi_label=multi_label)
    mean, std = rng.normal(size=5).astype(np.float32), rng.uniform(0.5, 2, 5).astype(np.float32)
    set_feature_statistics(head, mean, std)
    features = rng.normal(3, 2, (4, 5)).astype(np.float32)
    logits = _dense(head, "predictions", (features - mean) / std)
    expected = 1 / (1 + np.exp(-logits)) if multi_label else _softmax(logits)
    np.testing.assert_allclose(np.asarray(head(features)), expected, rtol=1e-5, atol=1e-6)
    assert is_multi_label(head) is multi_label


def test_hidden_layers_drop_out_only_in_training_and_every_kernel_pays_the_l2_penalty():
    rng = np.random.default_rng(1)
    head = build_head((5,), 3, dense=(4, 2), activation="relu", dropout=0.5, l2=0.01)
    assert [layer.name for layer in head.layers] == [
        "standardization", "dense_1", "dropout_1", "dense_2", "dropout_2", "predictions"]
    features = rng.normal(size=(64, 5)).astype(np.float32)
    hidden = np.maximum(_dense(head, "dense_2", np.maximum(_dense(head, "dense_1", features), 0)), 0)
    np.testing.assert_allclose(np.asarray(head(features)), _softmax(_dense(head, "predictions", hidden)),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(head(features, training=True)), np.asarray(head(features)))
    kernels = [head.get_layer(name).get_weights()[0] for name in ("dense_1", "dense_2", "predictions")]
    assert float(sum(head.losses)) == pytest.approx(0.01 * sum((kernel**2).sum() for kernel in kernels), rel=1e-5)
    assert [layer.name for layer in build_head((5,), 3, dropout=0.2).layers] == [
        "standardization", "dropout", "predictions"]
    assert build_head((5,), 3).losses == []


def _pool(feature_map: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "avg":
        return feature_map.mean(axis=(1, 2))
    if pooling == "max":
        return feature_map.max(axis=(1, 2))
    return feature_map.reshape(len(feature_map), -1)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_the_classifier_is_the_backbones_preprocessing_frozen_base_pooling_and_head(pooling):
    base = build_base(TINY, 32, WeightsSource("none"))
    feature_size = 4 * 4 * TINY.feature_size if pooling == "flatten" else TINY.feature_size
    head = build_head((feature_size,), 3)
    classifier = build_classifier(TINY, 32, base, head, pooling)
    assert base.trainable is False and classifier.get_layer(f"{pooling}_pool") is not None
    assert find_predictions(classifier) is head.get_layer("predictions") and not is_multi_label(classifier)

    pixels = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    feature_map = np.asarray(base(pixels / 127.5 - 1, training=False))  # TinyNet's "tf" preprocessing
    expected = _softmax(_dense(head, "predictions", _pool(feature_map, pooling)))
    np.testing.assert_allclose(np.asarray(classifier(pixels)), expected, rtol=1e-4, atol=1e-6)


def test_the_feature_extractor_gives_the_classifiers_pooled_features():
    extractor = build_feature_extractor(TINY, 32, WeightsSource("none"), pooling="max")
    assert extractor.output_shape == (None, TINY.feature_size) and extractor.trainable_weights == []
    assert find_predictions(extractor) is None and not is_multi_label(extractor)


def test_under_mixed_precision_the_head_keeps_its_statistics_and_probabilities_in_float32():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        head = build_head((5,), 3, dense=(4,))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert head.get_layer("dense_1").compute_dtype == "bfloat16"
    assert head.get_layer("standardization").compute_dtype == head.get_layer("predictions").compute_dtype == "float32"
    probabilities = head(np.random.default_rng(3).normal(size=(2, 5)).astype(np.float32))
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1, rtol=1e-6)
