"""`tlcli train`: a new head on a frozen backbone (feature-extraction transfer learning)."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli import __version__
from tlcli.backbones import get_backbone, resolve_image_size
from tlcli.config import FitConfig, TrainConfig
from tlcli.console import err
from tlcli.curves import plot_curves
from tlcli.data import Dataset, SplitOptions, load_dataset
from tlcli.errors import TlcliError
from tlcli.features import Features, extract_features
from tlcli.model import build_classifier, build_head
from tlcli.pipeline import image_dataset, tf
from tlcli.runs import (
    CONFIG, CURVES, HISTORY, LABELS, METRICS, MODEL, default_run_dir, finish_run_dir,
    prepare_run_dir, resumable, save_model_atomic, write_atomic, write_json,
)
from tlcli.runtime import import_keras, set_seed
from tlcli.training import History, balanced_class_weight, compile_model, fit
from tlcli.weights import build_base, parse_weights

keras = import_keras()


@dataclass
class Outcome:
    run_dir: Path
    metrics: dict
    route: str


def versions() -> dict:
    return {
        "tlcli": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def with_one_hot(dataset, num_classes: int):
    """Labels as one-hot vectors: Keras's label smoothing needs categorical targets."""
    return dataset.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    resume: bool = False,
    quiet: bool = False,
    augment=None,
) -> Outcome:
    spec = get_backbone(config.model)
    image_size = resolve_image_size(spec, config.image_size)
    weights = parse_weights(config.weights)
    fit_config = config.fit
    dataset = load_dataset(
        config.data, SplitOptions(config.val_split, config.test_split, fit_config.seed), strict=config.strict
    )
    report_dataset(dataset, quiet)
    run_dir = Path(config.out) if config.out else default_run_dir(spec.name)
    route = "cached features" if config.cache_features and augment is None else "end to end"
    if config.cache_features and augment is not None and not quiet:
        err.print("Augmentation is on: the backbone sees new pixels every epoch, so features are not cached.")

    set_seed(fit_config.seed)
    base = build_base(spec, image_size, weights)
    num_classes = len(dataset.class_names)
    head = build_config_head(config, pooled_feature_shape(spec, base, config.pooling), num_classes)
    model = build_classifier(spec, image_size, base, head, config.pooling)

    document = {
        **config.to_dict(),
        "kind": "train",
        "image_size": image_size,
        "preprocessing": spec.preprocessing,
        "route": route,
        **dataset_facts(dataset),
        "versions": versions(),
    }
    run_dir = prepare_run_dir(run_dir, overwrite=overwrite, resume=resume)
    if resume:
        check_same_settings(run_dir, document)
    write_json(run_dir / CONFIG, document)
    write_atomic(run_dir / LABELS, "\n".join(dataset.class_names) + "\n")

    train_samples, val_samples = dataset.split("train"), dataset.splits.get("val", ())
    class_weight = class_weight_for(fit_config, np.array([s.label for s in train_samples]), num_classes)
    history = History.load(run_dir / HISTORY)
    batch_size = fit_config.batch_size

    if route == "cached features":
        train_features, val_features = cached_features(model, config.pooling, train_samples, val_samples,
                                                       image_size, batch_size, quiet)
        train_data = feature_batches(train_features, num_classes, batch_size, fit_config.seed, shuffle=True)
        val_data = feature_batches(val_features, num_classes, batch_size) if val_features else None
        trained = head
    else:
        train_data = with_one_hot(
            image_dataset(train_samples, image_size, batch_size, shuffle=True, seed=fit_config.seed, augment=augment),
            num_classes,
        )
        val_data = (
            with_one_hot(image_dataset(val_samples, image_size, batch_size), num_classes) if val_samples else None
        )
        trained = model

    with resumable(run_dir):
        metrics = fit_and_measure(
            trained, train_data, val_data, fit_config, num_train=len(train_samples), run_dir=run_dir,
            history=history, class_weight=class_weight, quiet=quiet,
        )
    save_outcome(run_dir, model, history, metrics)
    return Outcome(run_dir, metrics, route)


def pooled_feature_shape(spec, base, pooling: str) -> tuple[int]:
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
    )


def class_weight_for(fit_config: FitConfig, labels: np.ndarray, num_classes: int) -> dict | None:
    if fit_config.class_weight == "balanced":
        return balanced_class_weight(labels, num_classes)
    return None


def cached_features(model, pooling: str, train_samples, val_samples, image_size: int, batch_size: int, quiet: bool):
    """(train, val) features of a classifier's frozen backbone, computed once; val is None without samples."""
    extractor = keras.Model(model.input, model.get_layer(f"{pooling}_pool").output)
    train_features = _features(extractor, train_samples, image_size, batch_size, "train", quiet)
    val_features = _features(extractor, val_samples, image_size, batch_size, "val", quiet) if val_samples else None
    return train_features, val_features


def feature_batches(features: Features, num_classes: int, batch_size: int, seed: int = 0, shuffle: bool = False):
    data = tf.data.Dataset.from_tensor_slices((features.features, tf.one_hot(features.labels, num_classes)))
    if shuffle:
        data = data.shuffle(len(features.labels), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_and_measure(
    trained, train_data, val_data, fit_config: FitConfig, *, num_train: int, run_dir: Path,
    history: History, class_weight: dict | None, quiet: bool,
) -> dict:
    """Compile, fit (early stopping restores the best weights) and measure on the validation data."""
    steps = max(1, -(-num_train // fit_config.batch_size))
    compile_model(trained, fit_config, fit_config.learning_rate, steps * fit_config.epochs)
    result = fit(
        trained, train_data, val_data, fit_config,
        epochs=fit_config.epochs, steps_per_epoch=steps, run_dir=run_dir, stage="train",
        history=history, class_weight=class_weight, quiet=quiet,
    )
    metrics = {"best_epoch": result.best_epoch, "epochs_run": history.last_epoch, "seconds": round(result.seconds, 2)}
    if val_data is not None:
        loss, accuracy = trained.evaluate(val_data, verbose=0)
        metrics.update(val_loss=float(loss), val_accuracy=float(accuracy))
    return metrics


def _features(extractor, samples, image_size, batch_size, split, quiet):
    if quiet:
        return extract_features(extractor, samples, image_size, batch_size)
    from tlcli.console import progress

    bar, advance = progress(f"Features ({split})", len(samples))
    with bar:
        return extract_features(extractor, samples, image_size, batch_size, on_batch=advance)


def save_outcome(run_dir: Path, model, history: History, metrics: dict) -> None:
    save_model_atomic(model, run_dir / MODEL)
    write_json(run_dir / METRICS, metrics)
    rows = [history.rows[key] for key in sorted(history.rows)]
    if rows:
        plot_curves(rows, run_dir / CURVES)
    finish_run_dir(run_dir)


def dataset_facts(dataset: Dataset) -> dict:
    return {
        "data": str(Path(dataset.root).resolve()),
        "layout": dataset.layout,
        "class_names": list(dataset.class_names),
        "counts": dataset.counts(),
        "skipped_files": len(dataset.problems),
    }


def report_dataset(dataset: Dataset, quiet: bool) -> None:
    if quiet:
        return
    sizes = ", ".join(f"{split} {len(samples)}" for split, samples in dataset.splits.items())
    err.print(f"{len(dataset.class_names)} classes; images: {sizes}.")
    if dataset.problems:
        err.print(
            f"[yellow]Skipping {len(dataset.problems)} unusable file(s)[/] "
            f"(e.g. {dataset.problems[0].path}: {dataset.problems[0].reason}); `tlcli inspect` lists all."
        )
    for note in dataset.notes:
        err.print(f"[dim]{note}[/]")


_NOT_COMPARED = {"out", "versions"}


def check_same_settings(run_dir: Path, document: dict) -> None:
    """A resumed run must be the same run: refuse if its settings changed."""
    path = run_dir / CONFIG
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    changed = sorted(
        key for key in set(saved) | set(document)
        if key not in _NOT_COMPARED and json.dumps(saved.get(key), default=str) != json.dumps(document.get(key), default=str)
    )
    if changed:
        raise TlcliError(
            f"--resume: the settings differ from the interrupted run in {run_dir} "
            f"({', '.join(changed)}). Repeat the original command with --resume, or use --overwrite."
        )
