"""Fitting: optimisers, schedules, callbacks, and one `fit` shared by train and finetune."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcli.config import FitConfig
from tlcli.console import err
from tlcli.runs import BACKUP, LOGS, atomic_file, write_atomic
from tlcli.runtime import import_keras, import_tensorflow

keras = import_keras()

HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")

# Automatic training length (--epochs and --early-stopping left out). A fixed number of epochs
# gives a small dataset a few dozen optimiser steps, far from converged, so the budget is in
# steps; early stopping judges only after a warm-up of steps, so that a few validation images
# cannot stop a run on noise before it has learnt anything.
AUTO_STEPS = 1000
AUTO_EPOCHS = (10, 300)  # the fewest and the most epochs an automatic run takes
WARMUP_STEPS = 200
AUTO_PATIENCE = 5  # epochs, and at least the warm-up's worth of steps


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
    model.compile(
        optimizer=make_optimizer(fit, learning_rate, total_steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=fit.label_smoothing),
        metrics=["accuracy"],
    )


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weights inversely proportional to class frequency (scikit-learn's "balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(num_classes, np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def with_targets(dataset, num_classes: int, class_weights: np.ndarray | None = None):
    """(inputs, labels) -> (inputs, one-hot labels[, per-example class weights]).

    One-hot because Keras's label smoothing needs categorical targets; class weights travel as
    sample weights, which work under every distribution strategy.
    """
    tf = import_tensorflow()

    def targets(inputs, labels):
        one_hot = tf.one_hot(labels, num_classes)
        if class_weights is None:
            return inputs, one_hot
        return inputs, one_hot, tf.gather(tf.constant(class_weights), labels)

    return dataset.map(targets)


@dataclass
class History:
    """history.csv, rewritten atomically after every epoch. Rows are keyed by epoch, so an epoch
    repeated after a resume replaces its earlier row instead of adding another."""

    path: Path
    rows: dict[int, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "History":
        history = cls(path)
        if path.is_file():
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    history.rows[int(row["epoch"])] = row
        return history

    def record(self, row: dict) -> None:
        epoch = int(row["epoch"])
        self.rows = {key: value for key, value in self.rows.items() if key < epoch}
        self.rows[epoch] = row
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows[key] for key in sorted(self.rows))
        write_atomic(self.path, buffer.getvalue())

    @property
    def last_epoch(self) -> int:
        return max(self.rows, default=0)


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self, history: History, stage: str, first_epoch: int):
        super().__init__()
        self.history, self.stage, self.first_epoch = history, stage, first_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        rate = self.model.optimizer.learning_rate
        row = {"epoch": self.first_epoch + epoch + 1, "stage": self.stage}
        row.update({key: _number(logs.get(key)) for key in HISTORY_COLUMNS[2:6]})
        row["learning_rate"] = _number(keras.ops.convert_to_numpy(rate))
        self.history.record(row)


def _number(value):
    return "" if value is None else f"{float(value):.6g}"


class _RichProgress(keras.callbacks.Callback):
    """A live bar while an epoch runs (steps, running loss and accuracy, time), replaced when it
    ends by one line of its results. Both fit in 80 columns for a fine-tuning stage such as
    `stage2-block14 10/10` of 1234 steps:

        stage2-block14 10/10 ━━━━━━━━━━ 1234/1234 loss 1.0992 acc 0.333 0:01:05
        stage2-block14 10/10 loss 1.0992 acc 0.333 val_loss 1.0924 val_acc 0.333 65.2s
    """

    RESULTS = (("loss", "loss", ".4f"), ("accuracy", "acc", ".3f"), ("val_loss", "val_loss", ".4f"),
               ("val_accuracy", "val_acc", ".3f"))

    def __init__(self, epochs: int, steps: int, stage: str):
        super().__init__()
        self.epochs, self.steps, self.stage = epochs, steps, stage

    def on_train_begin(self, logs=None):
        from tlcli.console import err  # looked up now, so that tests can give it a narrow terminal
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=10), MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), console=err,
        )
        self.progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.description, self.started = f"{self.stage} {epoch + 1}/{self.epochs}", time.perf_counter()
        self.task = self.progress.add_task(self.description, total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        metrics = f"loss {logs.get('loss', math.nan):.4f} acc {logs.get('accuracy', math.nan):.3f}"
        self.progress.update(self.task, completed=batch + 1, metrics=metrics)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        results = " ".join(f"{name} {logs[key]:{spec}}" for key, name, spec in self.RESULTS if key in logs)
        self.progress.remove_task(self.task)
        self.progress.console.print(f"{self.description} {results} {time.perf_counter() - self.started:.1f}s")

    def on_train_end(self, logs=None):
        self.progress.stop()


def save_model_state(model, folder: Path, name: str) -> str:
    """Save the weights, the optimiser's state and the random state of the model's layers
    (dropout's seed generators, which Keras's weight files leave out) as NAME.weights.h5 and
    NAME.seeds.npz in `folder`. Returns NAME, for `load_model_state`."""
    model.save_weights(folder / f"{name}.weights.h5")
    with atomic_file(folder / f"{name}.seeds.npz") as handle:
        np.savez(handle, *[keras.ops.convert_to_numpy(state) for state in _seed_states(model)])
    return name


def load_model_state(model, folder: Path, name: str) -> None:
    """Restore what `save_model_state` saved, the optimiser's state included when it is compiled."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    model.load_weights(folder / f"{name}.weights.h5")
    with np.load(folder / f"{name}.seeds.npz", allow_pickle=False) as saved:
        for index, state in enumerate(_seed_states(model)):
            state.assign(saved[f"arr_{index}"])


def _seed_states(model) -> list:
    """The state variables of the model's random seed generators (`variables` minus `weights`)."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


class _EpochNumber(keras.callbacks.Callback):
    """Sets the pipeline's epoch counter (`tlcli.pipeline.epoch_counter`) as each epoch begins,
    so that its order and augmentation follow from the run's epoch number, not from how many
    times the dataset was read before."""

    def __init__(self, counter, first_epoch: int):
        super().__init__()
        self.counter, self.first_epoch = counter, first_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.counter.assign(self.first_epoch + epoch)


class _Checkpoint(keras.callbacks.Callback):
    """A backup after every epoch from which a killed fit goes on exactly as if it had never
    stopped, and that a kill cannot leave half-written.

    Keras's BackupAndRestore brings back the weights, the optimiser and the epoch number, not
    dropout's random state nor the callbacks' state: a resumed run drew other dropout masks,
    forgot early stopping's best epoch and patience, and ended on the best epoch after the
    interruption. It also rewrote its weights file in place, so a kill while saving left a run
    that could not resume. Here every epoch's state goes to new files, and the metadata naming
    them (checkpoint.json) is replaced atomically last: a resumed run finds the last complete
    epoch's files together. `stateful` are the callbacks whose counters are saved; they must
    come before this one, so that their state at the end of an epoch is the one saved.
    """

    METADATA = "checkpoint.json"
    COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")

    def __init__(self, folder: Path, stateful: list):
        super().__init__()
        self.folder, self.stateful = folder, stateful

    @property
    def epochs_done(self) -> int:
        """The epochs of this fit that the backup holds (0 if there is none)."""
        metadata = self.folder / self.METADATA
        return json.loads(metadata.read_text())["epoch"] if metadata.is_file() else 0

    def on_train_begin(self, logs=None):
        metadata = self.folder / self.METADATA
        if not metadata.is_file():
            return
        state = json.loads(metadata.read_text())
        load_model_state(self.model, self.folder, state["model"])
        for callback, counters in zip(self.stateful, state["callbacks"]):
            for key, value in counters.items():
                setattr(callback, key, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and state.get("best_weights"):
                with np.load(self.folder / state["best_weights"], allow_pickle=False) as saved:
                    callback.best_weights = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        # An early stop that was saved but not finished: run no more epochs.
        self.model._initial_epoch = self.params["epochs"] if state["stopped"] else state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"epoch": epoch + 1, "model": save_model_state(self.model, self.folder, f"epoch-{epoch + 1}"),
                 "stopped": bool(self.model.stop_training), "callbacks": [], "best_weights": None}
        for callback in self.stateful:
            state["callbacks"].append(
                {key: _plain(getattr(callback, key)) for key in self.COUNTERS if hasattr(callback, key)}
            )
            if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
                state["best_weights"] = f"best-epoch-{callback.best_epoch + 1}.npz"
                if callback.best_epoch == epoch:  # improved (or the first judged epoch): keep its weights
                    with atomic_file(self.folder / state["best_weights"]) as handle:
                        np.savez(handle, *callback.best_weights)
        write_atomic(self.folder / self.METADATA, json.dumps(state))
        kept = {f"{state['model']}.weights.h5", f"{state['model']}.seeds.npz", state["best_weights"], self.METADATA}
        for old in self.folder.iterdir():
            if old.name not in kept:
                old.unlink()

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # Keras would start the model's next fit at this epoch
        shutil.rmtree(self.folder, ignore_errors=True)


def _plain(value):
    """A callback counter as JSON holds it (Keras keeps some as NumPy or backend scalars)."""
    if value is None or isinstance(value, (int, str)):
        return value
    return float(keras.ops.convert_to_numpy(value))


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
    fixed_steps: bool = False,
    backups: bool = True,
    quiet: bool = False,
) -> FitResult:
    """Fit with early stopping (best weights restored), TensorBoard logs and history.csv.

    With `backups`, every epoch is backed up, so that a killed run resumes from its last
    completed epoch. A head trained on cached features has none: the features are computed
    again on resume anyway, and the head's seconds of training simply run again, identically.
    `epoch` is the training pipeline's `epoch_counter()`, set to the run's epoch number as each
    epoch begins. `fixed_steps` is for repeating (multi-worker) datasets; otherwise an epoch is
    one pass.
    """
    monitor = "val_loss" if val_data is not None else "loss"
    callbacks, stateful = [], []
    if epoch is not None:
        callbacks.append(_EpochNumber(epoch, first_epoch))
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
    callbacks += [*stateful, _EpochRecorder(history, stage, first_epoch)]
    if backups:
        checkpoint = _Checkpoint(run_dir / BACKUP / stage, stateful)
        if checkpoint.epochs_done and not quiet:
            err.print(f"{stage}: resuming from epoch {first_epoch + checkpoint.epochs_done + 1}.", markup=False)
        callbacks.append(checkpoint)
    callbacks.append(keras.callbacks.TensorBoard(str(run_dir / LOGS / stage), write_graph=False))
    if not quiet:
        callbacks.append(_RichProgress(length.epochs, steps_per_epoch, stage))
    started = time.perf_counter()
    result = model.fit(
        train_data,
        validation_data=val_data,
        epochs=length.epochs,
        steps_per_epoch=steps_per_epoch if fixed_steps else None,
        validation_steps=validation_steps,
        callbacks=callbacks,
        shuffle=False,  # the input pipeline shuffles, reproducibly under --seed
        verbose=0,
    )
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
