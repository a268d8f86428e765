"""`tlcli train`: a new head on a frozen backbone (feature-extraction transfer learning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import AugmentConfig, describe
from tlcli.data.dataset import Dataset, SplitOptions, load_dataset
from tlcli.data.pipeline import epoch_counter
from tlcli.data.row_cache import RowCache
from tlcli.distribute.placement import (
    DistributeConfig,
    Placement,
    broadcast_from_chief,
    distribute,
    place,
)
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.models.backbones import get_backbone, resolve_image_size
from tlcli.models.build import STANDARDIZATION, build_classifier, build_head, set_feature_statistics
from tlcli.models.features import Features, extract_features
from tlcli.models.weights import build_base, parse_weights
from tlcli.runs.curves import plot_penalty_path
from tlcli.runs.directory import default_run_dir
from tlcli.runs.names import PENALTY
from tlcli.runs.history import History
from tlcli.runs.locks import locks_outputs
from tlcli.runs.staging import staged_output, url_sources
from tlcli.runtime import import_keras, set_seed
from tlcli.training.batches import DecodedImages, feature_dataset, image_batches
from tlcli.training.config import FitConfig, TrainConfig
from tlcli.training.fit import class_weights_for, fit_and_measure
from tlcli.training.head_solver import (
    LinearSolution,
    feature_statistics,
    penalty_for_weight_decay,
    solve_linear_head,
    solve_one_vs_rest,
)
from tlcli.training.lifecycle import Outcome, TrainingRun, validation_thresholds

keras = import_keras()

SOLVED, CACHED, END_TO_END = "solved (L-BFGS)", "cached features", "end to end"


@locks_outputs
def train(
    config: TrainConfig,
    *,
    augmentation: AugmentConfig | None = None,
    distribution: DistributeConfig = DistributeConfig(),
    overwrite: bool = False,
    resume: bool = False,
    events: Events = SILENT,
) -> Outcome:
    """Train a head on a frozen backbone into `config.out` (a folder, or a URL: runs.staging)."""
    with staged_output(config.out, "run", overwrite=overwrite, resume=resume, data=config.data,
                       sources=url_sources(config.weights, "the --weights model")) as staged:
        outcome = _train(config, staged.local, augmentation, distribution, overwrite, resume, events)
        return dataclasses.replace(outcome, run_dir=staged.public(outcome.run_dir))


def _train(config: TrainConfig, out: Path | None, augmentation: AugmentConfig | None, distribution: DistributeConfig,
           overwrite: bool, resume: bool, events: Events) -> Outcome:
    placement = place(distribution, config.data)  # first: multi-worker collectives need it so
    spec = get_backbone(config.model)
    image_size = resolve_image_size(spec, config.image_size)
    weights = parse_weights(config.weights)
    dataset = load_dataset(
        config.data, SplitOptions(config.val_split, config.test_split, config.fit.seed), strict=config.strict,
        labels=config.label_file(),
    )
    run = TrainingRun(placement, dataset, config.fit, events)
    augmentation = augmentation or AugmentConfig()
    augment = build_augmenter(augmentation, config.fit.seed)
    route, reason = head_route(config, augmentation)
    if reason:
        events.note(f"{reason}.")

    with run.claimed(out or default_run_dir(spec.name), weights=weights, overwrite=overwrite, resume=resume):
        with placement.strategy.scope():
            base = build_base(spec, image_size, weights)
            head = build_config_head(config, pooled_feature_shape(spec, base, config.pooling), len(dataset.class_names))
            model = build_classifier(spec, image_size, base, head, config.pooling)
        run.start({
            **config.to_dict(),
            "kind": "train",
            "image_size": image_size,
            "preprocessing": spec.preprocessing,
            "route": route,
            "augmentation": augmentation.to_dict(),
        })
        metrics, val_features = fit_route(run, route, model, head, config, image_size, augment)
        metrics["route"] = route
        if dataset.multi_label:
            metrics["thresholds"] = validation_thresholds(model, head, val_features, dataset, image_size,
                                                          config.fit.batch_size)
        run.keep(model, metrics)
    return Outcome(run.requested, metrics, route)


def fit_route(run: TrainingRun, route: str, model, head, config: TrainConfig, image_size: int,
              augment) -> tuple[dict, Features | None]:
    """Fit the head of a started run by its route; its metrics, and the validation images'
    cached features (None end to end)."""
    dataset, placement, fit_config = run.dataset, run.placement, config.fit
    train_samples, val_samples = dataset.split("train"), dataset.splits.get("val", ())
    class_weights = class_weights_for(fit_config, [sample.label for sample in train_samples],
                                      len(dataset.class_names))
    with run.resumable():
        # The end-to-end route reads every image in every epoch: decoded once, before anything reads them.
        decoded = run.decode(route == END_TO_END and config.cache_images, image_size)
        # Every route standardizes the pooled features with the training images' statistics, and
        # every route but end to end trains on those features, computed once.
        train_features, val_features = cached_features(
            model, config.pooling, train_samples, () if route == END_TO_END else val_samples, image_size,
            fit_config.batch_size, run.events, decoded=decoded.get("train"),
        )
        if route == END_TO_END:
            standardize(head, train_features, placement)
            metrics = fit_end_to_end(model, dataset, image_size, fit_config, class_weights, augment,
                                     run_dir=run.run_dir, history=run.history, placement=placement,
                                     events=run.events, decoded=decoded)
        else:
            metrics = fit_head(route, head, train_features, val_features, fit_config, class_weights,
                               run_dir=run.run_dir, history=run.history, placement=placement, events=run.events)
    return metrics, val_features


def fit_end_to_end(model, dataset: Dataset, image_size: int, fit_config: FitConfig, class_weights, augment, *,
                   run_dir: Path, history: History, placement: Placement, events: Events,
                   decoded: DecodedImages | None = None) -> dict:
    """Train the head through the frozen backbone on the images themselves (augmented, when
    asked), read from `decoded` when they were decoded once for the run."""
    train_samples, val_samples = dataset.split("train"), dataset.splits.get("val", ())
    num_classes, batch_size = len(dataset.class_names), fit_config.batch_size
    decoded = decoded or DecodedImages({})
    epoch = epoch_counter()
    train_data, steps = image_batches(placement, train_samples, image_size, batch_size, num_classes, shuffle=True,
                                      seed=fit_config.seed, epoch=epoch, class_weights=class_weights, augment=augment,
                                      decoded=decoded.get("train"))
    val_data, val_steps = (
        image_batches(placement, val_samples, image_size, batch_size, num_classes, decoded=decoded.get("val"))
        if val_samples else (None, None)
    )
    return fit_and_measure(model, train_data, val_data, fit_config, steps=steps, val_steps=val_steps, run_dir=run_dir,
                           history=history, placement=placement, epoch=epoch, events=events)


def head_route(config: TrainConfig, augmentation: AugmentConfig | None) -> tuple[str, str | None]:
    """(route, reason): how the head is fitted, and why not solved when auto could not solve it.

    A head with no hidden layer on cached features is solved by logistic regression, unless a
    setting has no equivalent there; everything else is trained by gradient, on cached features
    when the backbone's output is the same every epoch, else end to end.
    """
    augmenting = augmentation is not None and not augmentation.is_identity
    cached = config.cache_features and not augmenting
    gradient_route = CACHED if cached else END_TO_END
    if config.head_solver == "gradient":
        return gradient_route, None
    obstacle = solver_obstacle(config, augmentation if augmenting else None)
    if obstacle is None:
        return SOLVED, None
    if config.head_solver == "lbfgs":
        raise TlcliError(
            f"--head-solver lbfgs solves a linear head on cached features, but {obstacle}. "
            "Drop that setting, or use --head-solver auto or gradient."
        )
    return gradient_route, f"Training the head by gradient ({gradient_route}): {obstacle}"


def solver_obstacle(config: TrainConfig, augmentation: AugmentConfig | None) -> str | None:
    """What in `config` (and an augmentation that changes images) the logistic-regression
    solver cannot express, if anything."""
    fit = config.fit
    if config.dense:
        return f"the head has hidden layers (--dense {','.join(map(str, config.dense))})"
    if augmentation is not None:
        return f"augmentation is on ({describe(augmentation)}), so the features change every epoch"
    if not config.cache_features:
        return "--no-cache-features trains through the backbone"
    if fit.label_smoothing > 0:
        return f"--label-smoothing {fit.label_smoothing:g} has no logistic-regression equivalent"
    if config.dropout > 0:
        return f"--dropout {config.dropout:g} has no logistic-regression equivalent"
    if fit.weight_decay > 0 and fit.optimizer == "adamw":
        return "AdamW's decoupled weight decay has no logistic-regression equivalent"
    return None


def fit_head(route: str, head, train_features: Features, val_features: Features | None, fit_config: FitConfig,
             class_weights, *, run_dir: Path, history: History, placement: Placement, events: Events = SILENT) -> dict:
    """Standardize, then solve or train `head` on cached features; its validation metrics.

    `tlcli train` and every `tlcli tune` trial fit their heads here, so a trial and the run
    that replays it match.
    """
    num_classes = head.output_shape[-1]
    standardize(head, train_features, placement)
    if route == SOLVED:
        solution = solve_head(head, train_features, num_classes, fit_config, class_weights, placement)
        if solution.note:
            events.note(solution.note)
        plot_penalty_path(solution, run_dir / PENALTY)
        return {**measure_head(head, val_features, num_classes), "seconds": round(solution.seconds, 2),
                "solver": solution.describe()}
    batch_size, seed, epoch = fit_config.batch_size, fit_config.seed, epoch_counter()

    def distributed_features(features, shuffle, weights):
        def make(count, index, batch, repeat_batches):
            return feature_dataset(features, num_classes, batch, seed, shuffle=shuffle, epoch=epoch,
                                   repeat_batches=repeat_batches, class_weights=weights, shard=(count, index))

        return distribute(placement, make, len(features.labels), batch_size)

    train_data, steps = distributed_features(train_features, True, class_weights)
    val_data, val_steps = distributed_features(val_features, False, None) if val_features else (None, None)
    return fit_and_measure(head, train_data, val_data, fit_config, steps=steps, val_steps=val_steps,
                           run_dir=run_dir, history=history, placement=placement, backups=False, epoch=epoch,
                           events=events)


def standardize(head, train_features: Features, placement: Placement) -> None:
    """Fix the head's standardization to the training features' mean and spread (the chief's,
    on every worker)."""
    mean, std = broadcast_from_chief(placement, feature_statistics(train_features.features))
    set_feature_statistics(head, mean, std)


def solve_head(head, train_features: Features, num_classes: int, fit_config: FitConfig, class_weights,
               placement: Placement):
    """Solve the linear head on the chief and give every worker its weights.

    A --weight-decay is taken as the L2 penalty it is in a gradient-trained head; otherwise the
    penalty is cross-validated.
    """
    standardized = head.get_layer(STANDARDIZATION)(train_features.features)
    labels = train_features.labels
    penalty = (penalty_for_weight_decay(fit_config.weight_decay, len(labels)) if fit_config.weight_decay > 0
               else None)
    solution = None
    if placement.is_chief and train_features.multi_label:
        solution = solve_one_vs_rest(np.asarray(standardized), labels, penalty=penalty, seed=fit_config.seed)
    elif placement.is_chief:
        solution = solve_linear_head(
            np.asarray(standardized), labels, num_classes, penalty=penalty, seed=fit_config.seed,
            sample_weight=None if class_weights is None else class_weights[labels],
        )
    shapes = [weight.shape for weight in head.get_layer("predictions").get_weights()]
    kernel, bias = broadcast_from_chief(
        placement, (solution.kernel, solution.bias) if solution else [np.zeros(shape, np.float32) for shape in shapes]
    )
    head.get_layer("predictions").set_weights([kernel, bias])
    return solution or LinearSolution(kernel, bias, penalty or 0.0, folds=0)


def measure_head(head, features: Features | None, num_classes: int) -> dict:
    """Validation loss and accuracy of a head on cached features, as `evaluate` reports them."""
    if features is None:
        return {}
    probabilities = head.predict(features.features, batch_size=1024, verbose=0)
    if features.multi_label:  # binary cross-entropy and accuracy per label, as Keras's fit reports them
        loss = keras.losses.BinaryCrossentropy()(features.labels.astype(np.float32), probabilities)
        return {"val_loss": float(loss), "val_accuracy": float(np.mean((probabilities >= 0.5) == features.labels))}
    targets = keras.ops.one_hot(features.labels, num_classes)
    loss = keras.losses.CategoricalCrossentropy()(targets, probabilities)
    accuracy = np.mean(np.argmax(probabilities, axis=1) == features.labels)
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def pooled_feature_shape(spec, base, pooling: str) -> tuple[int]:
    """The length of the vector the pooling layer makes of the backbone's feature map."""
    pool_output = base.output_shape[1:] if pooling == "flatten" else (spec.feature_size,)
    return (int(np.prod(pool_output)),)


def build_config_head(config: TrainConfig, feature_shape: tuple[int, ...], num_classes: int):
    """The head a TrainConfig describes; weight decay is an L2 penalty except with adamw."""
    # The seed is set again here so that a head depends only on its own settings, whatever
    # was built before it: a `tlcli tune` trial and the `tlcli train` it recommends then match.
    set_seed(config.fit.seed)
    return build_head(
        feature_shape,
        num_classes,
        dense=config.dense,
        activation=config.activation,
        dropout=config.dropout,
        l2=0.0 if config.fit.optimizer == "adamw" else config.fit.weight_decay,
        multi_label=config.multi_label,
    )


def cached_features(model, pooling: str, train_samples, val_samples, image_size: int, batch_size: int,
                    events: Events = SILENT, decoded: RowCache | None = None):
    """(train, val) features of a model's frozen backbone, computed once; val is None without
    samples. The training images are read from `decoded`, if they were decoded once for the run."""
    extractor = keras.Model(model.input, model.get_layer(f"{pooling}_pool").output)
    train_features = _features(extractor, train_samples, image_size, batch_size, "train", events, decoded)
    val_features = _features(extractor, val_samples, image_size, batch_size, "val", events) if val_samples else None
    return train_features, val_features


def _features(extractor, samples, image_size, batch_size, split, events: Events, decoded: RowCache | None = None):
    with events.counting(f"Features ({split})", len(samples)) as advance:
        return extract_features(extractor, samples, image_size, batch_size, advance=advance, decoded=decoded)
