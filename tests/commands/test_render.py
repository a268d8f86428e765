"""The commands' rendering: the progress line, and the events a workflow reports."""

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


def _recording(monkeypatch):
    from rich.console import Console

    import tlcli.commands._render as render

    terminal = Console(width=120, file=io.StringIO())
    monkeypatch.setattr(render, "err", terminal)
    return terminal


def test_console_events_show_notes_unless_quiet_and_only_on_the_chief(monkeypatch):
    from tlcli.commands._render import ConsoleEvents
    from tlcli.distribute.placement import Placement
    from tlcli.events import WARNING

    chief = Placement(None, "multi-worker", ("/cpu:0",), 2, num_workers=2, worker_index=0, is_chief=True)
    worker = Placement(None, "multi-worker", ("/cpu:0",), 2, num_workers=2, worker_index=1, is_chief=False)
    shown = {}
    for name, placement, quiet in (("chief", chief, False), ("worker", worker, False), ("quiet", chief, True)):
        terminal = _recording(monkeypatch)
        events = ConsoleEvents(quiet)
        events.placed(placement, 8)
        events.note("[bold]Stage 2[/] ended worse", WARNING)  # user text is shown literally
        shown[name] = terminal.file.getvalue()
    assert "Strategy multi-worker" in shown["chief"] and "[bold]Stage 2[/] ended worse" in shown["chief"]
    assert "Worker 2 of 2: the chief reports the progress." in shown["worker"] and "ended worse" not in shown["worker"]
    assert shown["quiet"] == ""
    assert ConsoleEvents(quiet=True).fit_progress(3, 10, "train") is None
