"""Terminal output (`tlcli.console`): messages wrapped between words on a terminal and whole in a
pipe, user input printed as written, JSON plain for scripts, progress on stderr."""

from __future__ import annotations

import io
import json

from helpers import MARKUP_NAMES


def test_messages_wrap_between_words_at_80_columns_and_stay_whole_in_a_pipe():
    """A terminal breaks an unwrapped line mid-word; a log file or pipe wants one line per message."""
    from tlcli.console import stderr_console

    message = ("Strategy default: 1 replica(s) on /device:CPU:0; batch 32 per replica, 32 global; float32. "
               "Augmentation is on (rotation 0.08, flip horizontal): the backbone sees new pixels every epoch.")
    terminal = stderr_console(file=io.StringIO(), width=80, force_terminal=True)
    terminal.print(message)
    lines = terminal.file.getvalue().splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert [word for line in lines for word in line.split()] == message.split()
    pipe = stderr_console(file=io.StringIO(), width=80, force_terminal=False)
    pipe.print(message)
    assert pipe.file.getvalue() == message + "\n"


def test_an_error_prints_user_input_as_written(monkeypatch):
    import tlcli.console
    from tlcli.console import literal, print_error, stderr_console

    pipe = stderr_console(file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(tlcli.console, "err", pipe)
    message = f"Unknown table [spcae] in --config a:x:b/[/b].toml; classes {', '.join(MARKUP_NAMES)}."
    print_error(message)
    assert pipe.file.getvalue() == f"Error: {message}\n"
    for text in (*MARKUP_NAMES, "[/b]", "C:\\[x]"):
        shown = stderr_console(file=io.StringIO(), force_terminal=False)
        shown.print(literal(text))
        assert shown.file.getvalue() == f"{text}\n"


def test_json_for_scripts_is_plain_indented_json_on_stdout(capsys):
    from pathlib import Path

    from tlcli.console import print_json

    print_json({"run": Path("runs/[a]"), "accuracy": 0.5, "classes": ["cat", "dog"]})
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out) == {"run": "runs/[a]", "accuracy": 0.5,
                                                               "classes": ["cat", "dog"]}
    assert captured.out.startswith('{\n  "run"') and "\x1b" not in captured.out  # no colour codes


def test_a_progress_bar_with_a_rate_shows_its_unit_per_second(monkeypatch):
    import tlcli.console
    from tlcli.console import progress, stderr_console

    terminal = stderr_console(file=io.StringIO(), width=100, force_terminal=True)
    monkeypatch.setattr(tlcli.console, "err", terminal)
    bar, advance = progress("Extracting", total=10, transient=False, rate="images")
    with bar:
        for _ in range(10):
            advance()
        bar.refresh()
    shown = terminal.file.getvalue()
    assert "Extracting" in shown and "10/10" in shown and "images/s" in shown
