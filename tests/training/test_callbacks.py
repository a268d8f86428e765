"""The fit callbacks: the per-epoch checkpoint, the epoch number, history rows and progress."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import read_history
from tlcli.runs.history import History
from tlcli.runtime import import_keras, import_tensorflow
from tlcli.training.config import FitConfig
from tlcli.training.fit import FitLength, fit


class _Killed(Exception):
    """Stands in for SIGKILL arriving while a backup is being written."""


def test_a_run_killed_while_saving_its_backup_resumes_from_the_last_complete_epoch(tmp_path, monkeypatch):
    keras, tf = import_keras(), import_tensorflow()
    features = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((features, (features[:, 0] > 0).astype("int32"))).batch(8)

    def fit_once():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        return fit(model, batches, None, FitConfig(early_stopping=0, batch_size=8), length=FitLength(5, 0),
                   steps_per_epoch=4, run_dir=tmp_path, stage="head", history=History(tmp_path / "history.csv"))

    real_savez = np.savez
    saves = []

    def save_and_die_on_the_third(handle, *arrays):
        saves.append(handle.name)
        if len(saves) == 3:  # the process dies half-way through epoch 3's backup
            handle.write(b"PK\x03\x04" + bytes(40))
            raise _Killed
        real_savez(handle, *arrays)

    monkeypatch.setattr(np, "savez", save_and_die_on_the_third)
    with pytest.raises(_Killed):
        fit_once()
    monkeypatch.setattr(np, "savez", real_savez)
    resumed = fit_once()
    assert resumed.epochs_run == 3  # epochs 3 to 5: the two complete epochs were kept


@pytest.mark.parametrize("killed_after", [1, 3, 5])
def test_a_fit_killed_after_any_epoch_resumes_to_the_uninterrupted_fit(tmp_path, monkeypatch, killed_after):
    """Dropout's masks, Adam's moments, the epoch's order and early stopping's counters all
    come back: the resumed fit ends with the uninterrupted fit's weights and history."""
    from tlcli.data.pipeline import epoch_counter, epochs
    from tlcli.training.callbacks import Checkpoint

    keras, tf = import_keras(), import_tensorflow()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)).astype("float32")
    targets = np.eye(2, dtype="float32")[(features[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)]

    def fit_in(folder):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dropout(0.5), keras.layers.Dense(2, activation="softmax")])
        model.compile(keras.optimizers.Adam(0.05), "categorical_crossentropy")
        counter = epoch_counter()
        data = epochs((tf.constant(features), tf.constant(targets)), lambda rows, _: rows.batch(8),
                      shuffle=True, seed=1, epoch=counter)
        fit(model, data, None, FitConfig(early_stopping=2, batch_size=8), length=FitLength(8, 2, 2),
            steps_per_epoch=5, run_dir=folder, stage="head", history=History.load(folder / "history.csv"),
            epoch=counter)
        return model.get_weights(), read_history(folder)

    whole = fit_in(tmp_path / "whole")
    saved = Checkpoint.on_epoch_end

    def save_then_die(self, epoch, logs=None):
        saved(self, epoch, logs)
        if epoch + 1 == killed_after:
            raise _Killed

    monkeypatch.setattr(Checkpoint, "on_epoch_end", save_then_die)
    with pytest.raises(_Killed):
        fit_in(tmp_path / "killed")
    monkeypatch.setattr(Checkpoint, "on_epoch_end", saved)
    resumed = fit_in(tmp_path / "killed")
    assert resumed[1] == whole[1]
    for ours, theirs in zip(resumed[0], whole[0], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not (tmp_path / "killed" / ".backup" / "head").exists()  # removed once the fit finished


def test_the_epoch_number_decides_the_order_not_how_often_the_data_was_read():
    from tlcli.data.pipeline import epoch_counter, epochs

    tf = import_tensorflow()
    counter = epoch_counter()
    data = epochs((tf.range(20),), lambda rows, _: rows.batch(20), shuffle=True, seed=4, epoch=counter)

    def order(number):
        counter.assign(number)
        return [int(value) for value in next(iter(data))[0]]

    first, second = order(0), order(1)
    assert sorted(first) == list(range(20)) and first != second
    assert order(1) == second and order(0) == first  # read again, in any order: the same
