"""Fitting: optimisers, schedules, callbacks, and one `fit` shared by train and finetune."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcli.config import FitConfig
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
        from tlcli.console import err
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


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose progress survives a killed run.

    Keras's BackupAndRestore brings back the model and the epoch, not the callbacks: a resumed
    run would forget its best epoch so far and its patience, and end on the best epoch after
    the interruption. This one saves its counters, and the best weights whenever they improve,
    beside the backup, and reads them back when training resumes.
    """

    def __init__(self, folder: Path, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state_file = self.folder / "state.json"
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
            with np.load(self.folder / state["weights"], allow_pickle=False) as saved:
                self.best_weights = [saved[f"arr_{index}"] for index in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.best is None:
            return
        # The state names its weights file, so that the two always agree after a kill.
        weights = f"best-epoch-{self.best_epoch}.npz"
        if self.best_epoch == epoch:  # improved (or the first epoch): keep its weights
            with atomic_file(self.folder / weights) as handle:
                np.savez(handle, *self.best_weights)
        state = {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch, "weights": weights}
        write_atomic(self.folder / "state.json", json.dumps(state))
        for old in self.folder.glob("best-epoch-*.npz"):
            if old.name != weights:
                old.unlink()


class _AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that a kill cannot leave half-written.

    Keras rewrites latest.weights.h5 in place, so a run killed while saving it could not resume
    ("Unable to synchronously open file (bad object header version number)"). Here each save
    goes to a new weights file, and the metadata naming it is replaced atomically once the file
    is complete: a resumed run finds the last complete epoch, weights and epoch number together.
    """

    METADATA = "training_metadata.json"

    def _load_model(self):
        metadata = Path(self.backup_dir) / self.METADATA
        if metadata.is_file():
            self._weights_path = str(Path(self.backup_dir) / json.loads(metadata.read_text())["weights"])
        super()._load_model()

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}-batch-{self._last_batch_seen}.weights.h5"
        self.model.save_weights(str(folder / name), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        write_atomic(folder / self.METADATA, json.dumps(metadata))
        for old in folder.glob("*.weights.h5"):
            if old.name != name:
                old.unlink()


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
    validation_steps: int | None = None,
    fixed_steps: bool = False,
    backups: bool = True,
    quiet: bool = False,
) -> FitResult:
    """Fit with early stopping (best weights restored), TensorBoard logs and history.csv.

    With `backups`, every epoch is backed up, so that a killed run resumes from its last
    completed epoch. A head trained on cached features has none: the features are computed
    again on resume anyway, and the head's seconds of training simply run again, identically.
    `fixed_steps` is for repeating (multi-worker) datasets; otherwise an epoch is one pass.
    """
    monitor = "val_loss" if val_data is not None else "loss"
    callbacks = []
    if length.patience:
        settings = dict(monitor=monitor, patience=length.patience, restore_best_weights=True,
                        start_from_epoch=length.warmup_epochs)
        # Before BackupAndRestore, so that its state is saved first at each epoch's end.
        callbacks.append(
            _ResumableEarlyStopping(run_dir / BACKUP / f"{stage}-early-stopping", **settings) if backups
            else keras.callbacks.EarlyStopping(**settings)
        )
    if backups:
        callbacks.append(_AtomicBackupAndRestore(str(run_dir / BACKUP / stage), save_freq="epoch"))
    callbacks += [
        _EpochRecorder(history, stage, first_epoch),
        keras.callbacks.TensorBoard(str(run_dir / LOGS / stage), write_graph=False),
    ]
    if fit_config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.2, patience=max(1, length.patience // 2)
            )
        )
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
