"""The Keras callbacks of tlcli's fits: the resumable per-epoch checkpoint, the epoch number the
input pipeline reads, history.csv's rows and the progress line; and the model state they save."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np

from tlcli.runs.atomic import atomic_file, write_atomic
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


def training_state(model) -> list[np.ndarray]:
    """A copy of everything a fit changes or a resumed fit needs, as NumPy arrays: the model's
    weights, the optimiser's variables and the seed generators' states, in a fixed order."""
    optimizer = getattr(model, "optimizer", None)
    variables = [*model.weights, *(optimizer.variables if optimizer is not None and optimizer.built else ()),
                 *_seed_states(model)]
    return [keras.ops.convert_to_numpy(variable) for variable in variables]


def restore_training_state(model, arrays) -> None:
    """Put back what `training_state` copied (the optimiser is built first if need be)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = [*model.weights, *(optimizer.variables if optimizer is not None else ()), *_seed_states(model)]
    for variable, array in zip(variables, arrays, strict=True):
        variable.assign(array)


class _BackgroundWriter:
    """Runs one write at a time on a thread, so that saving a checkpoint overlaps the next epoch;
    a new write (or `wait`) first waits for the last, and re-raises its error."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job) -> None:
        self.wait()
        # Not a daemon: a process ending (after Ctrl-C too) first finishes the checkpoint it was writing.
        self._thread = threading.Thread(target=self._run, args=(job,), name="tlcli-checkpoint", daemon=False)
        self._thread.start()

    def _run(self, job) -> None:
        try:
            job()
        except BaseException as error:  # handed to the training thread by wait()
            self._error = error

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


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

    The state is copied to memory as the epoch ends and written on a background thread while
    the next epoch trains: writing a fine-tuned ResNet50's weights and Adam's state (215 MB)
    took 0.6-1 s an epoch, a tenth of a 128 px epoch on 2 cores.

    Several workers each back up to a folder of their own, and a kill stops them between their
    writes: one may hold an epoch the other has not written. With `agree` (the latest epoch
    that every worker holds, from those this one holds and the fit's epochs), each keeps its
    last `AGREED` epochs and all resume from the same one. `on_resume` hears the epochs done. A worker can be two epochs behind:
    its write of epoch N is still going when the chief has written N + 1, and N - 1 is then
    the latest both hold.
    """

    METADATA = "checkpoint.json"
    COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")
    AGREED = 3

    def __init__(self, folder: Path, stateful: list, agree=None, on_resume=None):
        super().__init__()
        self.folder, self.stateful, self.agree, self.on_resume = folder, stateful, agree, on_resume
        self.keep = self.AGREED if agree is not None else 1
        self._writer = _BackgroundWriter()
        self._held: list[dict] = []  # the epochs' states the backup holds, oldest first

    def _read_held(self) -> list[dict]:
        """The epochs' states the backup holds, oldest first."""
        metadata = self.folder / self.METADATA
        if not metadata.is_file():
            return []
        saved = json.loads(metadata.read_text())
        return saved["held"] if "held" in saved else [saved]  # one state: a backup of an earlier tlcli

    def on_train_begin(self, logs=None):
        self._held = self._read_held()
        held = {state["epoch"]: state for state in self._held}
        epoch = self.agree(held, self.params["epochs"]) if self.agree is not None else max(held, default=0)
        self._held = [state for state in self._held if state["epoch"] <= epoch]
        if epoch == 0:
            return
        if self.on_resume is not None:
            self.on_resume(epoch)
        state = held[epoch]
        with np.load(self.folder / state["model"], allow_pickle=False) as saved:
            restore_training_state(self.model, [saved[f"arr_{index}"] for index in range(len(saved.files))])
        for callback, counters in zip(self.stateful, state["callbacks"]):
            for key, value in counters.items():
                setattr(callback, key, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and state.get("best_weights"):
                with np.load(self.folder / state["best_weights"], allow_pickle=False) as saved:
                    callback.best_weights = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        # An early stop that was saved but not finished: run no more epochs.
        self.model._initial_epoch = self.params["epochs"] if state["stopped"] else state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        arrays = training_state(self.model)  # copied now: the next epoch changes the variables
        state = {"epoch": epoch + 1, "model": f"epoch-{epoch + 1}.npz", "stopped": bool(self.model.stop_training),
                 "callbacks": [], "best_weights": None}
        best_weights = None
        for callback in self.stateful:
            state["callbacks"].append(
                {key: _plain(getattr(callback, key)) for key in self.COUNTERS if hasattr(callback, key)}
            )
            if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
                state["best_weights"] = f"best-epoch-{callback.best_epoch + 1}.npz"
                if callback.best_epoch == epoch:  # improved (or the first judged epoch): keep its weights
                    best_weights = list(callback.best_weights)
        self._held = [*self._held, state][-self.keep:]
        held = list(self._held)
        self._writer.submit(lambda: self._write(state, arrays, best_weights, held))

    def _write(self, state: dict, arrays: list, best_weights: list | None, held: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.folder / state["model"]) as handle:
            np.savez(handle, *arrays)
        if best_weights is not None:
            with atomic_file(self.folder / state["best_weights"]) as handle:
                np.savez(handle, *best_weights)
        write_atomic(self.folder / self.METADATA, json.dumps({"held": held}))
        kept = {self.METADATA} | {name for kept in held for name in (kept["model"], kept["best_weights"])}
        for old in self.folder.iterdir():
            if old.name not in kept:
                old.unlink()

    def flush(self) -> None:
        """Wait for the backup being written, after a fit that ended early (Ctrl-C, an error), so
        that it is whole before the run is published or the process ends. The fit's own error is
        the one to report, so the writer's is not raised here."""
        with contextlib.suppress(Exception):
            self._writer.wait()

    def on_train_end(self, logs=None):
        self._writer.wait()
        self.model._initial_epoch = None  # Keras would start the model's next fit at this epoch
        shutil.rmtree(self.folder, ignore_errors=True)


def _plain(value):
    """A callback counter as JSON holds it (Keras keeps some as NumPy or backend scalars)."""
    if value is None or isinstance(value, (int, str)):
        return value
    return float(keras.ops.convert_to_numpy(value))
