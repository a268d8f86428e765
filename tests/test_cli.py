"""The command line as a user meets it (`tlcli.cli`): speed, help, the version, one-line errors
and exit codes, for every command the app has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from helpers import MARKUP_NAMES, runner, write_class_folders
from tlcli import __version__
from tlcli.cli import app
from tlcli.runtime import DEBUG_ENV

COMMANDS = [command.name for command in app.registered_commands]


def _tlcli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tlcli", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def test_help_does_not_import_tensorflow():
    """What keeps `tlcli --help` fast (bench/cli_latency.py times it): no TensorFlow import."""
    code = (
        "import sys; sys.argv = ['tlcli', '--help']\n"
        "from tlcli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TF', 'tensorflow' in sys.modules, 'KERAS', 'keras' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "inspect" in result.stdout and "train" in result.stdout and "export" in result.stdout
    assert result.stderr.split() == ["TF", "False", "KERAS", "False"]


@pytest.mark.subprocess  # the installed entry point's exit codes, one fresh process per command
def test_whole_process_help_and_version():
    result = _tlcli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"tlcli {__version__}"
    for command in ("models", "inspect", "pack", "augment", "train", "finetune", "tune", "evaluate", "calibrate", "explain",
                    "predict", "export", "extract", "audit"):
        help_text = _tlcli(command, "--help")
        assert help_text.returncode == 0 and "Usage: tlcli " + command in help_text.stdout


def test_every_command_has_help_and_the_app_its_version():
    """In this process, for every command the app registers (a new one included the day it is added)."""
    assert {"models", "inspect", "pack", "augment", "train", "lr-find", "finetune", "tune", "evaluate", "calibrate",
            "explain", "predict", "export", "extract", "audit", "report"} == set(COMMANDS)
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout == f"tlcli {__version__}\n"
    listing = runner.invoke(app, [])
    assert all(command in listing.output for command in COMMANDS)
    for command in COMMANDS:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and result.stdout.strip().startswith(f"Usage: tlcli {command} "), result.output


def _help_rows(command: str, monkeypatch) -> dict[str, str]:
    """Each option's row of a command's --help (its name, help, default), as one line of words."""
    monkeypatch.setenv("COLUMNS", "400")  # Rich sizes its panels by COLUMNS; at 80 it cuts names short
    result = runner.invoke(app, [command, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    rows, name = {}, None
    for line in result.output.splitlines():
        cells = line.strip("│ ").split()
        starts = (cells[1] if cells[:1] == ["*"] else cells[0] if cells else "").split(",")[0]  # --learning-rate,--lr
        if line.startswith("│") and starts.startswith("-"):
            name = starts
        elif not line.startswith("│"):
            name = None
        if name:
            rows[name] = " ".join(f"{rows.get(name, '')} {line.strip('│ ')}".split())
    return rows


def _shown_default(option) -> str | None:
    """What `[default: ...]` an option's help shows, from its declaration (None: no default)."""
    default = option.default
    if isinstance(option.show_default, str):
        return f"({option.show_default})"
    if option.secondary_opts and isinstance(default, bool):  # --verify/--no-verify: the flag that is on
        return (option.opts if default else option.secondary_opts)[0].lstrip("-")
    if default is None or default is False or default == ():
        return None  # not given: nothing happens unless it is, as the help says
    values = default if isinstance(default, (list, tuple)) else [default]
    return ", ".join(str(getattr(value, "value", value)) for value in values)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default_in_its_commands_help(command, monkeypatch):
    """A default is declared once, with the option (`show_default` when it is a rule rather than a
    value), never typed into the help, where Rich would read `[default: ...]` as markup and drop it."""
    rows = _help_rows(command, monkeypatch)
    click_command = typer.main.get_command(app).commands[command]
    options = [param for param in click_command.params if param.param_type_name == "option"]
    for option in options:
        assert "default:" not in (option.help or "").lower(), f"{option.opts[0]}: give its default as show_default"
        expected = _shown_default(option)
        row = rows[option.opts[0]]
        if expected is None:
            assert "[default:" not in row, row
        else:
            assert f"[default: {expected}]" in row, row
    assert {option.opts[0] for option in options} <= set(rows)


def test_an_options_help_names_only_options_of_its_command_or_says_whose(monkeypatch):
    """An option's help that sends the user to another option names one the command has, unless
    it names the command whose option it is (`finetune's --cache-memory`, `tlcli explain --method`)."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        own = {opt for param in command.params for opt in (*param.opts, *getattr(param, "secondary_opts", ()))}
        for param in command.params:
            text = getattr(param, "help", None) or ""
            for found in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                before = text[max(0, found.start() - 25):found.start()]
                whose = any(re.search(rf"\b{re.escape(other)}('s)? (\S+ )?$", before) for other in group.commands)
                assert found.group() in own or whose, f"tlcli {name} {param.opts[0]}: {found.group()} in {text!r}"


@pytest.mark.subprocess  # a real process's stderr and exit code, with and without --debug
def test_errors_are_one_line_without_traceback(tmp_path):
    result = _tlcli("inspect", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Dataset folder")
    assert "Traceback" not in result.stderr
    debug = _tlcli("--debug", "inspect", str(tmp_path / "missing"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("command", [command for command in COMMANDS if command != "models"])  # models reads nothing
def test_every_command_says_a_missing_input_in_one_line_and_debug_raises_it(command, tmp_path, monkeypatch):
    """What a user sees, in one line with exit code 2; with --debug, the exception itself."""
    from tlcli.errors import TlcliError

    missing = tmp_path / "missing"
    others = {"pack": ["--out", tmp_path / "out"], "export": ["--out", tmp_path / "out"],
              "extract": ["--out", tmp_path / "features.npz"]}.get(command, [])
    if command in ("evaluate", "explain", "predict"):
        others = [tmp_path / "images"]
    arguments = [command, str(missing), *map(str, others)]
    monkeypatch.setenv(DEBUG_ENV, "0")  # --debug sets it in this process: put back when the test ends
    result = runner.invoke(app, arguments, terminal_width=400)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert any(str(path) in lines[0] for path in (missing, tmp_path / "images"))  # names what is missing
    assert list(tmp_path.iterdir()) == []
    debug = runner.invoke(app, ["--debug", *arguments])
    assert isinstance(debug.exception, TlcliError) and str(debug.exception) in lines[0]


def test_class_names_and_paths_print_as_written(tmp_path, monkeypatch):
    """Rich reads `[...]` as markup and `:x:` as an emoji code; user input must print as typed."""
    monkeypatch.chdir(tmp_path)
    data = write_class_folders(Path("data [u]a:x:b"), dict.fromkeys(MARKUP_NAMES, 3))
    (data / "a:x:b" / "[bold]notes.txt").write_text("not an image")
    result = runner.invoke(app, ["inspect", str(data)])
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in MARKUP_NAMES)
    assert "data [u]a:x:b/a:x:b/[bold]notes.txt" in result.stdout and "❌" not in result.stdout

    missing = runner.invoke(app, ["inspect", "missing [bold]a:x:b"])
    lines = missing.output.strip().splitlines()
    assert missing.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith("Error: Dataset folder missing [bold]a:x:b does not exist.")
