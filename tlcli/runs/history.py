"""history.csv: one row per epoch of a run, rewritten atomically after every epoch."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.runs.atomic import write_atomic

HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


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
