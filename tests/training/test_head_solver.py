"""The linear-head solver: scikit-learn's logistic regression, written into a softmax layer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tlcli.errors import TlcliError
from tlcli.training.head_solver import (
    PATIENCE,
    STD_FLOOR,
    feature_statistics,
    out_of_fold_probabilities,
    penalty_for_weight_decay,
    solve_linear_head,
)


def blobs(num_classes: int, per_class: int, size: int, seed: int = 0, spread: float = 3.0):
    """Gaussian clusters, one per class, standardized as the head standardizes them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (num_classes, size))
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + rng.normal(0, spread, (len(labels), size))
    mean, std = feature_statistics(features)
    return ((features - mean) / std).astype(np.float32), labels


def softmax_probabilities(solution, features):
    logits = features.astype(np.float64) @ solution.kernel + solution.bias
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("num_classes, size", [(4, 300), (4, 20), (2, 50)],
                         ids=["more features than images", "more images than features", "two classes"])
def test_the_written_layer_gives_scikit_learns_probabilities(num_classes, size):
    features, labels = blobs(num_classes, per_class=15, size=size)
    solution = solve_linear_head(features, labels, num_classes)

    # In float64: scikit-learn fits float32 input in float32, only to about 1e-5.
    reference = LogisticRegression(C=solution.penalty, max_iter=5000, tol=1e-10).fit(features.astype(np.float64), labels)
    assert solution.kernel.shape == (size, num_classes) and solution.bias.shape == (num_classes,)
    np.testing.assert_allclose(softmax_probabilities(solution, features), reference.predict_proba(features),
                               atol=1e-5)


def test_the_penalty_is_the_cross_validated_best_and_the_walk_stops_after_it():
    features, labels = blobs(3, per_class=20, size=40, spread=4.0)
    solution = solve_linear_head(features, labels, 3)

    assert solution.folds == 5
    best = max(solution.path, key=lambda point: (round(point["cv_accuracy"], 9), -point["cv_log_loss"]))
    assert solution.penalty == best["C"] and solution.cv_accuracy == best["cv_accuracy"]
    after_best = len(solution.path) - 1 - solution.path.index(best)
    assert after_best == PATIENCE or solution.path[-1]["C"] == 1e4  # stopped, or reached the grid's end


def test_few_images_per_class_mean_fewer_folds():
    features, labels = blobs(3, per_class=3, size=30)
    assert solve_linear_head(features, labels, 3).folds == 3


def test_a_class_with_one_image_gets_the_default_penalty_and_says_why():
    features, labels = blobs(3, per_class=6, size=10)
    keep = np.concatenate([np.flatnonzero(labels != 2), np.flatnonzero(labels == 2)[:1]])
    solution = solve_linear_head(features[keep], labels[keep], 3)

    assert solution.folds == 0 and solution.penalty == 1.0
    assert "single training image" in solution.note
    assert softmax_probabilities(solution, features[keep]).argmax(1).tolist() == labels[keep].tolist()


def test_a_class_without_training_images_is_never_predicted():
    features, labels = blobs(3, per_class=10, size=10)
    solution = solve_linear_head(features, labels, num_classes=4)
    assert softmax_probabilities(solution, features)[:, 3].max() < 1e-30


def test_weight_decay_is_taken_as_the_l2_penalty_it_is_in_keras():
    features, labels = blobs(3, per_class=10, size=10)
    penalty = penalty_for_weight_decay(1e-3, len(labels))
    solution = solve_linear_head(features, labels, 3, penalty=penalty)
    assert solution.penalty == pytest.approx(1 / (2 * 30 * 1e-3)) and solution.folds == 0 and not solution.path


def test_balanced_class_weights_move_the_boundary_towards_the_larger_class():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 40 + [1] * 8)
    features = (rng.normal(0, 1, (48, 1)) + 0.8 * labels[:, None]).astype(np.float32)
    weights = np.where(labels == 1, 48 / (2 * 8), 48 / (2 * 40))
    plain = solve_linear_head(features, labels, 2, penalty=1.0)
    balanced = solve_linear_head(features, labels, 2, penalty=1.0, sample_weight=weights)
    predicted = {name: softmax_probabilities(solution, features).argmax(1).sum()
                 for name, solution in (("plain", plain), ("balanced", balanced))}
    assert predicted["balanced"] > predicted["plain"]  # more images called the rare class


def test_a_nearly_constant_feature_is_not_magnified_beyond_the_floor():
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (50, 4))
    features[:, 0] = 5 + rng.normal(0, 1e-6, 50)  # a nearly dead unit
    features[:, 1] = 3.0  # a dead one
    mean, std = feature_statistics(features)
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-6)
    median = np.median(features[:, [0, 2, 3]].std(axis=0))
    assert std[0] == pytest.approx(STD_FLOOR * median, rel=1e-5) and std[1] == 1.0
    np.testing.assert_allclose(std[2:], features[:, 2:].std(axis=0), rtol=1e-5)


def test_out_of_fold_probabilities_are_each_images_held_out_prediction_at_the_chosen_penalty():
    """The oracle: scikit-learn's cross_val_predict over the same stratified folds, at the C
    that solve_linear_head chooses; the cross-validation's looser tolerance moves them little."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features, labels = blobs(3, per_class=20, size=40, spread=4.0)
    found = out_of_fold_probabilities(features, labels, seed=0)

    assert found.penalty == solve_linear_head(features, labels, 3).penalty and found.folds == 5
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    reference = cross_val_predict(LogisticRegression(C=found.penalty, max_iter=5000, tol=1e-10),
                                  features.astype(np.float64), labels, cv=folds, method="predict_proba")
    np.testing.assert_allclose(found.probabilities, reference, atol=0.03)  # measured 0.016
    assert (found.probabilities.argmax(1) == reference.argmax(1)).mean() > 0.95
    assert np.mean(found.probabilities.argmax(1) == labels) < 1.0, "held out: not the training fit"


def test_out_of_fold_probabilities_need_two_images_of_every_class():
    features, labels = blobs(3, per_class=4, size=10)
    with pytest.raises(TlcliError, match="two images or more of every class"):
        out_of_fold_probabilities(features[:-3], labels[:-3])
