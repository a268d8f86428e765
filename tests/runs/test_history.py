"""history.csv: one row per epoch, rewritten whole after every epoch, an epoch repeated after a
resume replacing its row and the rows after it."""

from __future__ import annotations

import csv

from tlcli.runs.history import HISTORY_COLUMNS, History


def row(epoch: int, stage: str = "train", loss: float = 1.0, **extra) -> dict:
    return {"epoch": epoch, "stage": stage, "loss": loss, "accuracy": 0.5, "val_loss": loss + 0.1,
            "val_accuracy": 0.5, "learning_rate": 0.001, **extra}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_history_is_written_after_every_epoch_and_reads_back_as_written(tmp_path):
    path = tmp_path / "history.csv"
    history = History.load(path)
    assert history.rows == {} and history.last_epoch == 0 and not path.exists()
    history.record(row(1, loss=0.9, note="a column history.csv has not"))
    assert [line["epoch"] for line in read_csv(path)] == ["1"]  # on disk as soon as the epoch ends
    history.record(row(2, stage="stage1-block3", loss=0.5))
    rows = read_csv(path)
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    assert [(line["epoch"], line["stage"], float(line["loss"])) for line in rows] == [
        ("1", "train", 0.9), ("2", "stage1-block3", 0.5)]
    reloaded = History.load(path)
    assert reloaded.last_epoch == 2 and reloaded.rows == {int(line["epoch"]): line for line in rows}
    assert [path.name for path in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left


def test_an_epoch_repeated_after_a_resume_replaces_its_row_and_those_after_it(tmp_path):
    """A run killed between an epoch's row and its backup repeats that epoch: its row is rewritten,
    and rows of epochs after it (from a run killed later, whose backup was older) are dropped."""
    path = tmp_path / "history.csv"
    history = History.load(path)
    for epoch in (1, 2, 3):
        history.record(row(epoch, loss=1.0 / epoch))
    resumed = History.load(path)
    resumed.record(row(2, loss=0.25))
    assert [(line["epoch"], float(line["loss"])) for line in read_csv(path)] == [("1", 1.0), ("2", 0.25)]
    assert resumed.last_epoch == 2
