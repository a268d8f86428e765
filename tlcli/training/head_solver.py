"""A linear head solved, not trained: multinomial logistic regression on standardized features.

On cached features a head with no hidden layer is a small convex problem, so tlcli solves it
with scikit-learn's L-BFGS `LogisticRegression` instead of running an optimiser for a guessed
number of epochs. The L2 penalty is chosen by stratified k-fold cross-validation on the
training features over a log grid of C (scikit-learn's inverse penalty), walked from the
strongest penalty up with warm starts and stopped once it stops improving. The held-out
probabilities of that cross-validation at the chosen C are every image's out-of-fold prediction
(`out_of_fold_probabilities`), which `tlcli audit` reads for likely label errors.

A multi-label (sigmoid) head is solved one label at a time: one-vs-rest binary logistic
regressions, each with its own cross-validated C (`solve_one_vs_rest`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from tlcli.errors import TlcliError

PENALTIES = tuple(float(c) for c in np.logspace(-4, 4, 17))  # C, strongest penalty first
MAX_FOLDS = 5
PATIENCE = 3  # grid points without a better cross-validated score before the walk stops
DEFAULT_PENALTY = 1.0  # scikit-learn's default C, when no cross-validation is possible
_ABSENT_CLASS_BIAS = -1e4  # a class with no training image is never predicted
_MAX_ITERATIONS = 1000
# Cross-validation only ranks penalties, so its fits stop at a looser tolerance (3x fewer
# iterations); the final fit converges tightly, so that it is the optimum to float precision.
_CV_TOLERANCE, _FINAL_TOLERANCE = 1e-3, 1e-10


@dataclass
class LinearSolution:
    """The solved head: weights for standardized features, and how the penalty was chosen."""

    kernel: np.ndarray  # features x classes, float32
    bias: np.ndarray  # classes, float32
    penalty: float  # the chosen C
    folds: int  # 0 when the penalty was not cross-validated
    path: list[dict] = field(default_factory=list)  # per C tried: C, cv_accuracy, cv_log_loss
    note: str | None = None  # why the penalty was not cross-validated, if it was not
    seconds: float = 0.0

    @property
    def cv_accuracy(self) -> float | None:
        return next((point["cv_accuracy"] for point in self.path if point["C"] == self.penalty), None)

    def describe(self) -> dict:
        """What metrics.json records of the solve."""
        return {
            "penalty_C": self.penalty,
            "folds": self.folds,
            "cv_accuracy": self.cv_accuracy,
            "path": self.path,
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }


# A feature that barely varies over the training images is scaled up no more than one whose
# spread is this share of the median spread. A nearly dead unit of a randomly initialised
# backbone varies by 1/500 of the median (measured on VGG16 at 32 px); unchecked, its gradient
# and then its change under fine-tuning were both magnified 500 times, and one step at 1e-5
# sent the validation loss from 0.28 to 78.
STD_FLOOR = 0.1


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per feature, as scikit-learn's StandardScaler computes them, but no std
    below STD_FLOOR x the median std (a constant feature gets std 1, as there)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(features, np.float64))
    varying = scaler.var_ > 0
    floor = STD_FLOOR * np.median(scaler.scale_[varying]) if varying.any() else 0.0
    std = np.where(varying, np.maximum(scaler.scale_, floor), 1.0)
    return scaler.mean_.astype(np.float32), std.astype(np.float32)


def penalty_for_weight_decay(weight_decay: float, num_samples: int) -> float:
    """The C that matches Keras's L2(weight_decay) on the kernel with a mean loss over
    `num_samples`: mean(loss) + wd*|w|^2 is C*sum(loss) + |w|^2/2 scaled by 1/(C n)."""
    return 1.0 / (2.0 * num_samples * weight_decay)


def solve_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    sample_weight: np.ndarray | None = None,
    penalty: float | None = None,
    seed: int = 0,
) -> LinearSolution:
    """Fit multinomial logistic regression on standardized `features`.

    With `penalty` (C) given, it is used as it is; otherwise it is cross-validated.
    """
    started = time.perf_counter()
    labels, smallest_class = _checked(features, labels)
    with _solving():
        # The solution lies in the span of the training features, so the problem is solved in
        # coordinates of that span: exact, and far smaller when features outnumber images.
        coordinates, basis = _row_space(np.asarray(features, np.float64))
        folds, path, note = 0, [], None
        if penalty is None:
            penalty, folds, path, note, _ = _cross_validate(coordinates, labels, sample_weight, smallest_class, seed)
        model = _classifier(penalty).fit(coordinates, labels, sample_weight=sample_weight)
    kernel, bias = _dense_weights(model, basis, num_classes)
    return LinearSolution(kernel, bias, penalty, folds, path, note, time.perf_counter() - started)


def _checked(features: np.ndarray, labels) -> tuple[np.ndarray, int]:
    """(the labels as an array, the number of images of the rarest class), once the features are
    known to be finite and the labels to hold two classes or more."""
    labels = np.asarray(labels)
    present, counts = np.unique(labels, return_counts=True)
    if len(present) < 2:
        raise TlcliError("The training images hold a single class; a classifier needs two or more.")
    # The features are checked once, here, not in each of the hundred fits and scores
    # (scikit-learn's checks were a third of the time).
    if not np.all(np.isfinite(features)):
        raise TlcliError("The backbone produced non-finite features (NaN or infinity); check the weights.")
    return labels, int(counts.min())


@contextlib.contextmanager
def _solving():
    """One BLAS thread (on problems this size more threads only contend: measured 10x slower
    with the second core busy), no repeated input checks, and no ConvergenceWarning (the
    weakest penalties stop at the iteration limit, as intended)."""
    from sklearn import config_context
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings(), config_context(assume_finite=True, skip_parameter_validation=True):
        warnings.simplefilter("ignore")
        yield


@dataclass
class OutOfFold:
    """Each image's class probabilities from the cross-validation model that did not see it."""

    probabilities: np.ndarray  # images x classes, columns in the order of the sorted labels
    penalty: float  # the C cross-validation chose, as solve_linear_head chooses it
    folds: int
    path: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> OutOfFold:
    """Cross-validate the penalty on standardized `features` exactly as `solve_linear_head` does
    (the same stratified folds, grid and stopping rule) and keep, for each image, the held-out
    probabilities of the fold model at the chosen C: an honest prediction for every image, at no
    cost beyond the cross-validation itself. Every class needs two images or more."""
    started = time.perf_counter()
    labels, smallest_class = _checked(features, labels)
    if smallest_class < 2:
        raise TlcliError("Out-of-fold probabilities need two images or more of every class.")
    with _solving():
        coordinates, _ = _row_space(np.asarray(features, np.float64))
        penalty, folds, path, _, probabilities = _cross_validate(coordinates, labels, None, smallest_class, seed)
    return OutOfFold(probabilities, penalty, folds, path, time.perf_counter() - started)


def _classifier(penalty: float, tolerance: float = _FINAL_TOLERANCE):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=penalty, tol=tolerance, max_iter=_MAX_ITERATIONS, warm_start=True)


def _row_space(features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(features in an orthonormal basis that spans their rows, the basis as rows), or
    (features, None) when there are at least as many images as features."""
    if features.shape[0] >= features.shape[1]:
        return features, None
    basis, triangle = np.linalg.qr(features.T)  # features = triangle.T @ basis.T
    return triangle.T, basis.T


def _cross_validate(features, labels, sample_weight, smallest_class: int, seed: int):
    """(chosen C, folds, the path of scores per C, a note when no fold was possible, and each
    image's held-out probabilities at the chosen C: None without folds)."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(MAX_FOLDS, smallest_class)
    if folds < 2:
        note = (f"A class has a single training image, so no cross-validation fold is possible: "
                f"the penalty is scikit-learn's default, C={DEFAULT_PENALTY:g}.")
        return DEFAULT_PENALTY, 0, [], note, None
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels))
    models = [_classifier(PENALTIES[0], _CV_TOLERANCE) for _ in splits]
    classes = np.unique(labels)
    path, best, best_scores, since_best = [], None, None, 0
    for penalty in PENALTIES:
        scores = [_fold_scores(model, penalty, features, labels, sample_weight, train, held_out, classes)
                  for model, (train, held_out) in zip(models, splits)]
        accuracy, log_loss = (float(np.mean([score[number] for score in scores])) for number in (0, 1))
        path.append({"C": penalty, "cv_accuracy": accuracy, "cv_log_loss": log_loss})
        # Best accuracy first; among equal accuracies the lower log loss (better calibrated).
        if best is None or (round(accuracy, 9), -log_loss) > (round(best["cv_accuracy"], 9), -best["cv_log_loss"]):
            best, best_scores, since_best = path[-1], scores, 0
        else:
            since_best += 1
            if since_best >= PATIENCE:
                break
    probabilities = np.empty((len(labels), len(classes)))
    for (_, held_out), score in zip(splits, best_scores):
        probabilities[held_out] = score[2]
    return best["C"], folds, path, None, probabilities


def _fold_scores(model, penalty, features, labels, sample_weight, train, held_out, classes):
    """(held-out accuracy, held-out log loss, held-out probabilities) of `model` fitted at `penalty`."""
    from sklearn.metrics import accuracy_score, log_loss

    weights = None if sample_weight is None else sample_weight[train]
    model.set_params(C=penalty).fit(features[train], labels[train], sample_weight=weights)
    held_out_weights = None if sample_weight is None else sample_weight[held_out]
    probabilities = model.predict_proba(features[held_out])
    return (
        accuracy_score(labels[held_out], model.classes_[probabilities.argmax(1)], sample_weight=held_out_weights),
        log_loss(labels[held_out], probabilities, labels=classes, sample_weight=held_out_weights),
        probabilities,
    )


def _dense_weights(model, basis, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model as a softmax Dense layer's (kernel, bias) over all `num_classes`."""
    coefficients, intercepts = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # binary: one logit z; softmax([0, z]) is sigmoid(z)
        coefficients = np.vstack([np.zeros_like(coefficients), coefficients])
        intercepts = np.concatenate([[0.0], intercepts])
    if basis is not None:
        coefficients = coefficients @ basis
    kernel = np.zeros((coefficients.shape[1], num_classes))
    bias = np.full(num_classes, _ABSENT_CLASS_BIAS)
    kernel[:, model.classes_] = coefficients.T
    bias[model.classes_] = intercepts
    return kernel.astype(np.float32), bias.astype(np.float32)


# A label on every (or no) training image: a constant probability of about 1 - 1e-4 (or 1e-4).
_CONSTANT_LABEL_LOGIT = 9.2


@dataclass
class OneVsRestSolution:
    """A solved multi-label head: one binary logistic regression per label, each with its own C.

    Per label rather than one C for all: labels differ in frequency and difficulty (a rare,
    subtle label wants a stronger penalty than a common, obvious one), and each label's
    cross-validation is the single-label solver's own, so the two routes choose C alike.
    """

    kernel: np.ndarray  # features x labels, float32, for sigmoids
    bias: np.ndarray
    labels: list[LinearSolution | None]  # None: the label was constant over the training images
    note: str | None = None
    seconds: float = 0.0
    path: list[dict] = field(default_factory=list)  # no single path to plot

    def describe(self) -> dict:
        return {
            "one_vs_rest": True,
            "per_label": [None if solution is None else {key: value for key, value in solution.describe().items()
                                                          if key != "path"} for solution in self.labels],
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }


def solve_one_vs_rest(
    features: np.ndarray, targets: np.ndarray, *, penalty: float | None = None, seed: int = 0
) -> OneVsRestSolution:
    """Fit one binary logistic regression per column of multi-hot `targets` on standardized
    `features`, as a sigmoid Dense layer's weights. A label that every training image has (or
    none has) gets a constant probability near 1 (or 0)."""
    started = time.perf_counter()
    targets = np.asarray(targets)
    kernel = np.zeros((features.shape[1], targets.shape[1]), np.float32)
    bias = np.zeros(targets.shape[1], np.float32)
    solutions, constant = [], []
    for index in range(targets.shape[1]):
        column = targets[:, index].astype(np.int64)
        if column.min() == column.max():
            bias[index] = _CONSTANT_LABEL_LOGIT if column[0] else -_CONSTANT_LABEL_LOGIT
            solutions.append(None)
            constant.append(index)
            continue
        solution = solve_linear_head(features, column, 2, penalty=penalty, seed=seed)
        # softmax([z0, z1]) = sigmoid(z1 - z0)
        kernel[:, index] = solution.kernel[:, 1] - solution.kernel[:, 0]
        bias[index] = solution.bias[1] - solution.bias[0]
        solutions.append(solution)
    notes = [solution.note for solution in solutions if solution is not None and solution.note]
    if constant:
        notes.insert(0, f"{len(constant)} label(s) are on every or no training image; they get a constant probability")
    return OneVsRestSolution(kernel, bias, solutions, "; ".join(dict.fromkeys(notes)) or None,
                             seconds=time.perf_counter() - started)
