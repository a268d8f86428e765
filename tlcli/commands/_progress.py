"""The live progress line of a fit, drawn on stderr (imported only when a fit starts: it needs Keras)."""

from __future__ import annotations

import math
import time

from tlcli.runtime import import_keras

keras = import_keras()


class RichProgress(keras.callbacks.Callback):
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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from tlcli.console import err  # looked up now, so that tests can give it a narrow terminal

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
