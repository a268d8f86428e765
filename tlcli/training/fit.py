"""Fitting: optimisers, schedules, callbacks, and one `fit` shared by train, finetune and the tune trials."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.distribute.placement import Placement, latest_held_by_all
from tlcli.events import SILENT, Events
from tlcli.runs.names import BACKUP, LOGS
from tlcli.runs.history import History
from tlcli.runtime import import_keras, import_tensorflow
from tlcli.training.callbacks import Checkpoint, EpochNumber, EpochRecorder
from tlcli.training.config import AUTO_EPOCHS, AUTO_PATIENCE, AUTO_STEPS, WARMUP_STEPS, FitConfig

keras = import_keras()



@dataclass(frozen=True)
class FitLength:
    """How long a fit runs: epochs, early stopping's patience (0 = off) and the epochs before
    early stopping starts judging."""

    epochs: int
    patience: int
    warmup_epochs: int = 0


def fit_length(fit: FitConfig, steps_per_epoch: int) -> FitLength:
    """The FitConfig's epochs and early stopping, resolved for this many steps per epoch."""
    def epochs_for(steps: int) -> int:
        return -(-steps // max(1, steps_per_epoch))

    fewest, most = AUTO_EPOCHS
    epochs = fit.epochs or min(most, max(fewest, epochs_for(AUTO_STEPS)))
    if fit.early_stopping is not None:
        return FitLength(epochs, fit.early_stopping)
    warmup = min(epochs_for(WARMUP_STEPS), epochs // 2)
    return FitLength(epochs, max(AUTO_PATIENCE, epochs_for(WARMUP_STEPS)), warmup)


def make_optimizer(fit: FitConfig, learning_rate: float, total_steps: int):
    """The optimiser, with a cosine-decayed rate for `--schedule cosine`.

    With adamw, `weight_decay` is AdamW's decoupled decay; with the others it is an L2 penalty
    on the head's kernels, set when the head is built.
    """
    rate = learning_rate
    if fit.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps))
    if fit.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if fit.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=fit.weight_decay)
    if fit.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=fit.momentum, nesterov=fit.nesterov)
    return keras.optimizers.RMSprop(rate)


def compile_model(model, fit: FitConfig, learning_rate: float, total_steps: int) -> None:
    """Categorical cross-entropy for a softmax head; binary cross-entropy per label (and
    accuracy per label, as "accuracy") for a multi-label sigmoid head."""
    from tlcli.models.build import is_multi_label

    if is_multi_label(model):
        loss = keras.losses.BinaryCrossentropy(label_smoothing=fit.label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        loss, metrics = keras.losses.CategoricalCrossentropy(label_smoothing=fit.label_smoothing), ["accuracy"]
    model.compile(optimizer=make_optimizer(fit, learning_rate, total_steps), loss=loss, metrics=metrics)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weights inversely proportional to class frequency (scikit-learn's "balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(num_classes, np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def class_weights_for(fit_config: FitConfig, labels, num_classes: int):
    """Per-class weights for --class-weight balanced, else None."""
    if fit_config.class_weight != "balanced":
        return None
    return balanced_class_weights(np.asarray(labels), num_classes)


def with_targets(dataset, num_classes: int, class_weights: np.ndarray | None = None):
    """(inputs, labels) -> (inputs, one-hot labels[, per-example class weights]).

    One-hot because Keras's label smoothing needs categorical targets; class weights travel as
    sample weights, which work under every distribution strategy. Float labels are multi-label
    multi-hot targets already, and pass as they are.
    """
    tf = import_tensorflow()

    def targets(inputs, labels):
        if labels.dtype.is_floating:
            return inputs, labels
        one_hot = tf.one_hot(labels, num_classes)
        if class_weights is None:
            return inputs, one_hot
        return inputs, one_hot, tf.gather(tf.constant(class_weights), labels)

    return dataset.map(targets)


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int  # global epoch number with the lowest monitored loss
    seconds: float


def fit(
    model,
    train_data,
    val_data,
    fit_config: FitConfig,
    *,
    length: FitLength,
    steps_per_epoch: int,
    run_dir: Path,
    stage: str,
    history: History,
    first_epoch: int = 0,
    epoch=None,
    validation_steps: int | None = None,
    backups: bool = True,
    placement: Placement | None = None,
    events: Events = SILENT,
) -> FitResult:
    """Fit with early stopping (best weights restored), TensorBoard logs and history.csv.

    With `backups`, every epoch is backed up, so that a killed run resumes from its last
    completed epoch. A head trained on cached features has none: the features are computed
    again on resume anyway, and the head's seconds of training simply run again, identically.
    `epoch` is the training pipeline's `epoch_counter()`, set to the run's epoch number as each
    epoch begins. Under several workers (`placement`) the datasets repeat, so an epoch is
    `steps_per_epoch` (and `validation_steps`), and all resume from an epoch every one holds;
    otherwise an epoch is one pass.
    """
    monitor = "val_loss" if val_data is not None else "loss"
    callbacks, checkpoint = fit_callbacks(fit_config, length, monitor, run_dir=run_dir, stage=stage, history=history,
                                          first_epoch=first_epoch, epoch=epoch, backups=backups,
                                          placement=placement, events=events)
    progress = events.fit_progress(length.epochs, steps_per_epoch, stage)
    if progress is not None:
        callbacks.append(progress)
    repeating = placement is not None and placement.num_workers > 1
    started = time.perf_counter()
    try:
        result = model.fit(
            train_data, validation_data=val_data, epochs=length.epochs,
            steps_per_epoch=steps_per_epoch if repeating else None,
            validation_steps=validation_steps if repeating else None,
            callbacks=callbacks, verbose=0,
            shuffle=False,  # the input pipeline shuffles, reproducibly under --seed
        )
    except BaseException:
        if checkpoint is not None:
            checkpoint.flush()  # the last epoch's backup is whole before a URL run is published
        raise
    losses = result.history.get(monitor, [])
    # The best epoch early stopping could pick: after its warm-up.
    rows = [row for row in history.rows.values()
            if row["stage"] == stage and row.get(monitor) and int(row["epoch"]) > first_epoch + length.warmup_epochs]
    best_row = min(rows, key=lambda row: float(row[monitor]), default=None)
    return FitResult(
        epochs_run=len(losses),
        best_epoch=int(best_row["epoch"]) if best_row else first_epoch,
        seconds=time.perf_counter() - started,
    )


def fit_callbacks(fit_config: FitConfig, length: FitLength, monitor: str, *, run_dir: Path, stage: str,
                  history: History, first_epoch: int, epoch, backups: bool,
                  placement: Placement | None = None, events: Events = SILENT) -> tuple[list, Checkpoint | None]:
    """(`fit`'s callbacks, its checkpoint or None without `backups`): the epoch number, early
    stopping and the plateau schedule (their state backed up with the weights), history.csv,
    the backup and the TensorBoard logs."""
    callbacks, stateful = [], []
    if epoch is not None:
        callbacks.append(EpochNumber(epoch, first_epoch))
    if length.patience:
        stateful.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=length.patience, restore_best_weights=True,
            start_from_epoch=length.warmup_epochs,
        ))
    if fit_config.schedule == "plateau":
        stateful.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.2, patience=max(1, length.patience // 2)
        ))
    # The epoch's row in history.csv is written before its backup: a run killed between the two
    # repeats the epoch and rewrites the row.
    callbacks += [*stateful, EpochRecorder(history, stage, first_epoch)]
    checkpoint = None
    if backups:
        agree = functools.partial(latest_held_by_all, placement) if placement and placement.num_workers > 1 else None
        checkpoint = Checkpoint(run_dir / BACKUP / stage, stateful, agree, on_resume=lambda done: events.note(
            f"{stage}: resuming from epoch {first_epoch + done + 1}."))
        callbacks.append(checkpoint)
    callbacks.append(keras.callbacks.TensorBoard(str(run_dir / LOGS / stage), write_graph=False))
    return callbacks, checkpoint


def fit_and_measure(
    trained, train_data, val_data, fit_config: FitConfig, *, steps: int, run_dir: Path, history: History,
    val_steps: int | None = None, placement: Placement | None = None, stage: str = "train", backups: bool = True,
    epoch=None, events: Events = SILENT,
) -> dict:
    """Compile, fit (early stopping restores the best weights) and measure on the validation data.
    `epoch` is the training images' `epoch_counter()`, if they are read through one."""
    length = fit_length(fit_config, steps)
    scope = placement.strategy.scope() if placement else contextlib.nullcontext()
    with scope:
        compile_model(trained, fit_config, fit_config.learning_rate, steps * length.epochs)
    repeating = placement is not None and placement.num_workers > 1
    result = fit(
        trained, train_data, val_data, fit_config,
        length=length, steps_per_epoch=steps, run_dir=run_dir, stage=stage,
        history=history, epoch=epoch, validation_steps=val_steps, backups=backups, placement=placement,
        events=events,
    )
    metrics = {"best_epoch": result.best_epoch, "epochs_run": history.last_epoch, "seconds": round(result.seconds, 2)}
    if val_data is not None:
        loss, accuracy = trained.evaluate(val_data, steps=val_steps if repeating else None, verbose=0)
        metrics.update(val_loss=float(loss), val_accuracy=float(accuracy))
    return metrics
