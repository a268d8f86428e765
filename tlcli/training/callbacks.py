"""The Keras callbacks of tlcli's fits: the resumable per-epoch checkpoint, the epoch number the
input pipeline reads, history.csv's rows and the progress line; and the model state they save."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tlcli.runs.directory import atomic_file, write_atomic
from tlcli.runs.history import HISTORY_COLUMNS, History
from tlcli.runtime import import_keras

keras = import_keras()


class EpochRecorder(keras.callbacks.Callback):
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


class EpochNumber(keras.callbacks.Callback):
    """Sets the pipeline's epoch counter (`tlcli.data.pipeline.epoch_counter`) as each epoch begins,
    so that its order and augmentation follow from the run's epoch number, not from how many
    times the dataset was read before."""

    def __init__(self, counter, first_epoch: int):
        super().__init__()
        self.counter, self.first_epoch = counter, first_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.counter.assign(self.first_epoch + epoch)


class Checkpoint(keras.callbacks.Callback):
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
