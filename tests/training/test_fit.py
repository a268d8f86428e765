"""Fitting: how long a fit runs, its optimisers, class weights and targets, and the loss it
minimises, on tiny heads built as tlcli builds them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss

from tlcli.models.build import build_head
from tlcli.runtime import import_keras, import_tensorflow
from tlcli.training.config import FitConfig
from tlcli.training.fit import (
    FitLength,
    balanced_class_weights,
    compile_model,
    fit_length,
    make_optimizer,
    with_targets,
)


@pytest.mark.parametrize("epochs, early_stopping, steps_per_epoch, length", [
    (None, None, 3, FitLength(300, 67, 67)),  # 1,000 steps would take 334 epochs: at most 300
    (None, None, 40, FitLength(25, 5, 5)),  # 1,000 steps; early stopping judges after 200 of them
    (None, None, 500, FitLength(10, 5, 1)),  # at least 10 epochs, and patience 5
    (4, None, 3, FitLength(4, 67, 2)),  # --epochs 4: warm-up at most half of them
    (None, 2, 40, FitLength(25, 2, 0)),  # --early-stopping 2: from the first epoch
    (7, 0, 40, FitLength(7, 0, 0)),  # --early-stopping 0: off
])
def test_a_fit_runs_about_a_thousand_steps_unless_told_otherwise(epochs, early_stopping, steps_per_epoch, length):
    assert fit_length(FitConfig(epochs=epochs, early_stopping=early_stopping), steps_per_epoch) == length


def test_each_optimizer_is_made_with_its_settings():
    keras = import_keras()
    sgd = make_optimizer(FitConfig(optimizer="sgd", momentum=0.5, nesterov=True), 0.1, 100)
    assert isinstance(sgd, keras.optimizers.SGD) and (sgd.momentum, sgd.nesterov) == (0.5, True)
    adamw = make_optimizer(FitConfig(optimizer="adamw", weight_decay=0.01), 0.1, 100)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.01
    assert isinstance(make_optimizer(FitConfig(optimizer="rmsprop"), 0.1, 100), keras.optimizers.RMSprop)
    assert float(make_optimizer(FitConfig(), 0.1, 100).learning_rate) == pytest.approx(0.1)
    cosine, rates = make_optimizer(FitConfig(schedule="cosine"), 0.1, 100), []
    for step in (0, 50, 100):
        cosine.iterations.assign(step)
        rates.append(float(cosine.learning_rate))
    assert rates == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)  # half a cosine, down to nothing at the last step


def test_balanced_class_weights_make_every_present_class_weigh_the_same():
    labels = np.array([0, 0, 0, 1, 3, 3])  # class 2 has no image
    weights = balanced_class_weights(labels, 4)
    assert weights[2] == 1.0
    totals = [weights[label] * np.sum(labels == label) for label in (0, 1, 3)]
    assert totals == pytest.approx([len(labels) / 3] * 3)


def test_targets_are_one_hot_with_their_class_weight_and_multi_hot_as_given():
    tf = import_tensorflow()
    labels = tf.data.Dataset.from_tensor_slices((np.zeros((3, 2), np.float32), np.array([2, 0, 1]))).batch(3)
    _, one_hot, weights = next(iter(with_targets(labels, 3, np.array([0.5, 1.0, 2.0], np.float32))))
    assert one_hot.numpy().tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]] and weights.numpy().tolist() == [2.0, 0.5, 1.0]
    multi_hot = np.array([[1, 0, 1], [0, 0, 0]], np.float32)
    rows = tf.data.Dataset.from_tensor_slices((np.zeros((2, 2), np.float32), multi_hot)).batch(2)
    batch = next(iter(with_targets(rows, 3, np.ones(3, np.float32))))
    assert len(batch) == 2 and np.array_equal(batch[1].numpy(), multi_hot)


@pytest.mark.parametrize("multi_label", [False, True], ids=["softmax", "sigmoid"])
def test_the_compiled_loss_is_the_cross_entropy_of_the_head(multi_label):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 5)).astype(np.float32)
    head = build_head((5,), 3, multi_label=multi_label)
    compile_model(head, FitConfig(), 1e-3, 10)
    probabilities = np.asarray(head(features, training=False), np.float64)
    if multi_label:
        targets = rng.integers(0, 2, (12, 3)).astype(np.float32)
        expected = np.mean([log_loss(targets[:, label], probabilities[:, label], labels=[0, 1]) for label in range(3)])
    else:
        labels = rng.integers(0, 3, 12)
        targets, expected = np.eye(3, dtype=np.float32)[labels], log_loss(labels, probabilities, labels=[0, 1, 2])
    loss, _ = head.evaluate(features, targets, verbose=0)
    assert loss == pytest.approx(expected, rel=1e-4)
