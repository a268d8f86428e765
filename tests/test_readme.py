"""The README's tour runs as written: its commands are copied out of README.md and run, in a fresh
folder holding a copy of sample_data/, each in a real process as a user types it, and every line
of output the README shows must be one the command printed (docs/getting-started.md shows the same
tour, included from the README)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from helpers import SOURCE_TREE

README = SOURCE_TREE / "README.md"
ELIDED = "..."


def tour() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it) for each ```console block of the tour."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("[start:tour]"):text.index("[end:tour]")]
    steps = []
    for block in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        command, *shown = block.splitlines()
        assert command.startswith("$ tlcli "), command
        steps.append((command[2:], [line.strip() for line in shown if line.strip() and line.strip() != ELIDED]))
    return steps


def test_the_tour_has_five_commands():
    assert [shlex.split(command)[1] for command, _ in tour()] == ["inspect", "train", "evaluate", "predict", "export"]


@pytest.mark.slow  # VGG16 end to end and a fresh-process export check: over a minute
def test_the_readme_tour_runs_as_written(tmp_path):
    shutil.copytree(SOURCE_TREE / "sample_data", tmp_path / "sample_data")
    environment = {**os.environ, "COLUMNS": "100"}  # the README shows a terminal 100 columns wide
    for command, shown in tour():
        done = subprocess.run([sys.executable, "-m", "tlcli", *shlex.split(command)[1:]], cwd=tmp_path,
                              env=environment, capture_output=True, text=True, timeout=900)
        printed = {line.strip() for line in (done.stdout + done.stderr).splitlines()}
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        missing = [line for line in shown if line not in printed]
        assert not missing, f"{command} no longer prints what the README shows:\n" + "\n".join(missing)
    assert (tmp_path / "runs" / "quickstart" / "evaluation.json").is_file()
    assert (tmp_path / "exported" / "quickstart" / "saved_model" / "saved_model.pb").is_file()
