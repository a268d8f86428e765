"""The live progress line of a fit (`tlcli.commands._progress`): a bar while an epoch runs, one
line of its results when it ends, both within 80 columns."""

from __future__ import annotations

import io
import re


def test_the_training_progress_fits_80_columns(monkeypatch):
    """At 80 columns the time column showed `0:00:…` and a fine-tuning stage's step count `…`."""
    from rich.console import Console

    import tlcli.console
    from tlcli.commands._progress import RichProgress

    terminal = Console(width=80, file=io.StringIO())
    monkeypatch.setattr(tlcli.console, "err", terminal)
    progress = RichProgress(epochs=10, steps=1234, stage="stage2-block14")
    progress.on_train_begin()
    progress.on_epoch_begin(9)
    progress.on_train_batch_end(1232, {"loss": 1.09921, "accuracy": 0.33333})
    live = Console(width=80, file=io.StringIO(), record=True)
    live.print(progress.progress.get_renderable())
    running = live.export_text().strip()
    assert re.fullmatch(r"stage2-block14 10/10 \S+ 1233/1234 loss 1\.0992 acc 0\.333 \d:\d\d:\d\d", running), running

    progress.on_epoch_end(9, {"loss": 1.09921, "accuracy": 0.33333, "val_loss": 1.09244, "val_accuracy": 0.33333})
    progress.on_train_end()
    lines = [line for line in terminal.file.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) <= 80, lines
    assert re.fullmatch(r"stage2-block14 10/10 loss 1\.0992 acc 0\.333 val_loss 1\.0924 val_acc 0\.333 \d+\.\ds", lines[0])


def test_an_epoch_without_validation_shows_its_training_results_alone(monkeypatch):
    from rich.console import Console

    import tlcli.console
    from tlcli.commands._progress import RichProgress

    terminal = Console(width=80, file=io.StringIO())
    monkeypatch.setattr(tlcli.console, "err", terminal)
    progress = RichProgress(epochs=2, steps=3, stage="train")
    progress.on_train_begin()
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        progress.on_train_batch_end(0, {"loss": 0.5})  # a model without accuracy: its place says nan
        assert progress.progress.tasks[-1].fields["metrics"] == "loss 0.5000 acc nan"
        progress.on_epoch_end(epoch, {"loss": 0.25 * (epoch + 1), "accuracy": 0.5})
    progress.on_train_end()
    lines = [line for line in terminal.file.getvalue().splitlines() if line.strip()]
    assert [re.sub(r" \d+\.\ds$", "", line) for line in lines] == [
        "train 1/2 loss 0.2500 acc 0.500", "train 2/2 loss 0.5000 acc 0.500"]
