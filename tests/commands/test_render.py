"""The commands' rendering (`tlcli.commands._render`): the events a workflow reports, the dataset it
read and its stages, shown on stderr and stdout, or not at all with --quiet or off the chief."""

from __future__ import annotations

import io
import json


def _recording(monkeypatch, stream: str = "err", width: int = 120):
    """A terminal standing in for the commands' stderr (or stdout) console."""
    from rich.console import Console

    import tlcli.commands._render as render

    terminal = Console(width=width, file=io.StringIO())
    monkeypatch.setattr(render, stream, terminal)
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


def test_the_dataset_read_is_one_line_of_sizes_then_what_was_skipped_as_written(messy_dataset, monkeypatch):
    from tlcli.commands._render import ConsoleEvents
    from tlcli.data.dataset import build_dataset, scan

    (messy_dataset / "train" / "cat" / "[bold]x.txt").write_text("not an image")
    dataset = build_dataset(scan(messy_dataset))
    terminal = _recording(monkeypatch, width=1000)  # a line each, unwrapped
    ConsoleEvents().dataset(dataset)
    lines = terminal.file.getvalue().splitlines()
    sizes = ", ".join(f"{split} {len(samples)}" for split, samples in dataset.splits.items())
    assert lines[0] == f"2 classes; images: {sizes}."
    first = dataset.problems[0]
    assert lines[1] == (f"Skipping {len(dataset.problems)} unusable file(s) (e.g. {first.path}: {first.reason}); "
                        "`tlcli inspect` lists all.")
    assert len(dataset.problems) == 5 and any(problem.path.name == "[bold]x.txt" for problem in dataset.problems)
    quiet = _recording(monkeypatch)
    ConsoleEvents(quiet=True).dataset(dataset)
    assert quiet.file.getvalue() == ""


def test_a_stage_is_a_table_of_what_it_unfreezes_and_trains(monkeypatch):
    from tlcli.commands._render import ConsoleEvents
    from tlcli.events import StageStart

    table = _recording(monkeypatch, "out")
    stage = StageStart(number=2, unfreeze="[b]block3", first_layer=11, layer_count=17, trainable_parameters=18_592,
                       frozen_parameters=2_000, learning_rate=1e-4, epochs=3, rate_source="range test",
                       route="cached: cut at block2_pool")
    ConsoleEvents().stage(stage)
    shown = table.file.getvalue()
    assert "Stage 2" in shown and "route: cached: cut at block2_pool" in shown
    row = next(line for line in shown.splitlines() if "[b]block3" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "[b]block3 (layers 11-16 of 17)", "18,592", "2,000", "0.0001 (range test)", "3"]
    ConsoleEvents(quiet=True).stage(stage)
    assert table.file.getvalue() == shown


def test_counting_shows_a_bar_unless_quiet(monkeypatch):
    from rich.console import Console

    import tlcli.console
    from tlcli.commands._render import ConsoleEvents

    terminal = Console(width=80, file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(tlcli.console, "err", terminal)
    with ConsoleEvents().counting("Checking images", 4) as advance:
        advance(3)
    assert "Checking images" in terminal.file.getvalue() and "3/4" in terminal.file.getvalue()
    silent = Console(width=80, file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(tlcli.console, "err", silent)
    with ConsoleEvents(quiet=True).counting("Checking images", 4) as advance:
        advance(4)
    assert silent.file.getvalue() == ""


def test_a_skipped_file_is_one_line_as_written_unless_quiet(monkeypatch):
    from tlcli.commands._render import ConsoleEvents

    terminal = _recording(monkeypatch, width=1000)
    ConsoleEvents().skipped("photos/[bold]x.png", "cannot identify image file")
    ConsoleEvents(quiet=True).skipped("photos/y.png", "cannot identify image file")
    assert terminal.file.getvalue().splitlines() == ["Skipped photos/[bold]x.png: cannot identify image file"]


def test_counting_with_a_rate_asks_for_the_speed_and_without_a_total_still_shows_a_bar(monkeypatch):
    from rich.console import Console

    import tlcli.commands._render as render
    import tlcli.console
    from tlcli.commands._render import ConsoleEvents

    terminal = Console(width=100, file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(tlcli.console, "err", terminal)
    asked = []
    monkeypatch.setattr(render, "progress", lambda *arguments, **options: asked.append(options) or
                        tlcli.console.progress(*arguments, **options))
    with ConsoleEvents().counting("Extracting", 4, rate="images") as advance:
        advance(4)
    with ConsoleEvents().counting("Explaining the worst losses", None):
        pass
    assert asked == [{"rate": "images"}, {"rate": None}]
    assert "4/4" in terminal.file.getvalue() and "Explaining the worst losses" in terminal.file.getvalue()


def _summary(monkeypatch, run_dir, metrics: dict, route: str) -> dict[str, str]:
    """The summary table that closes a train, as {row: value}."""
    from tlcli.commands._render import print_summary

    table = _recording(monkeypatch, "out")
    print_summary(run_dir, metrics, route)
    rows = [line.strip("│ ").split("│") for line in table.file.getvalue().splitlines() if line.count("│") == 3]
    return {name.strip(): value.strip() for name, value in rows}


def test_the_summary_says_how_the_head_was_found(monkeypatch, solved_run, tiny_run):
    solved = json.loads((solved_run / "metrics.json").read_text())
    shown = _summary(monkeypatch, solved_run, solved, "solved (L-BFGS)")
    solver = solved["solver"]
    assert shown["L2 penalty"] == (f"C = {solver['penalty_C']:.3g} ({solver['folds']}-fold cross-validated accuracy "
                                   f"{solver['cv_accuracy']:.4f})")
    assert shown["val accuracy"] == f"{solved['val_accuracy']:.4f}" and shown["route"] == "solved (L-BFGS)"
    assert shown["weights sha256"] == solved["weights_sha256"][:16] and "best epoch" not in shown
    gradient = json.loads((tiny_run / "metrics.json").read_text())
    shown = _summary(monkeypatch, tiny_run, gradient, "end to end")
    assert shown["best epoch"] == f"{gradient['best_epoch']} of {gradient['epochs_run']}" and "L2 penalty" not in shown


def test_a_multi_label_summary_shows_a_penalty_and_a_threshold_per_label(monkeypatch, tmp_path):
    metrics = {"solver": {"one_vs_rest": True, "per_label": [{"penalty_C": 0.5}, None]}, "val_loss": 0.25,
               "val_accuracy": 0.875, "thresholds": {"[haze]": 0.41, "water": 0.5}, "seconds": 2.04,
               "weights_sha256": "0123456789abcdef0123"}
    shown = _summary(monkeypatch, tmp_path, metrics, "solved (L-BFGS, one-vs-rest)")
    assert shown["L2 penalty"] == "C per label (one-vs-rest): 0.5, -"  # a label on every or no image has none
    assert shown["val accuracy (per label)"] == "0.8750" and shown["thresholds"] == "[haze] 0.410, water 0.500"
    assert shown["time"] == "2.0 s" and shown["weights sha256"] == "0123456789abcdef"
