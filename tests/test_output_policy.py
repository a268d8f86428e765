"""Every command, present and future, against the output policy (tlcli/runs/outputs.py).

It stands apart from the per-module tests because it is a rule over the whole Typer app: the
commands are listed from the app itself, so a new command fails here until its outputs are
described in OUTPUTS (or it is listed as writing nothing).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from helpers import TINY_TRAIN, invoke, kill_when, runner, write_colour_dataset
from tlcli.cli import app

USER_BYTES = b"a user's own file, which no command may change\n"


@dataclass(frozen=True)
class World:
    """A dataset and a TinyNet run trained on it, that every test snapshots before and after."""

    root: Path
    data: Path
    run: Path

    @property
    def image(self) -> Path:
        return self.data / "test" / "red" / "red_0.png"


# Each command that writes, as (its arguments given the world and its --out; what --out names:
# the suffix of the one file it writes, or "folder").
OUTPUTS = {
    "augment": (lambda w, out: ("augment", w.data, "--samples", 1, "--variants", 1, "--image-size", 16, "--out", out),
                ".png"),
    "lr-find": (lambda w, out: ("lr-find", w.run, "--steps", 5, "--batch-size", 8, "--out", out), ".png"),
    "extract": (lambda w, out: ("extract", w.data, *TINY_TRAIN, "--out", out), ".npz"),
    "evaluate": (lambda w, out: ("evaluate", w.run, w.data, "--out", out), "folder"),
    "explain": (lambda w, out: ("explain", w.run, w.image, "--out", out), "folder"),
    "export": (lambda w, out: ("export", w.run, "--format", "keras", "--no-verify", "--out", out), "folder"),
    "pack": (lambda w, out: ("pack", w.data, "--out", out), "folder"),
    "train": (lambda w, out: ("train", w.data, *TINY_TRAIN, "--out", out), "folder"),
    "finetune": (lambda w, out: ("finetune", w.run, "--stage", "block3:1:1e-4", "--batch-size", 8, "--quiet",
                                 "--out", out), "folder"),
    "tune": (lambda w, out: ("tune", w.data, *TINY_TRAIN, "--search", "random", "--trials", 1, "--epochs", 1,
                             "--out", out), "folder"),
    "audit": (lambda w, out: ("audit", w.data, *TINY_TRAIN, "--out", out), "folder"),
    "report": (lambda w, out: ("report", w.run, "--out", out), ".html"),
}
WRITES_NOTHING = {"models", "inspect", "predict"}  # they print, and write no file
IN_PLACE = {"calibrate"}  # writes the run it is given, and nothing else (tests/inference/test_calibrate.py)


def command_options() -> dict[str, set[str]]:
    """Every command of the app, with its option names."""
    group = typer.main.get_command(app)
    return {name: {opt for param in command.params for opt in getattr(param, "opts", ())}
            for name, command in group.commands.items()}


def test_every_command_says_where_it_writes():
    commands = command_options()
    undescribed = set(commands) - set(OUTPUTS) - WRITES_NOTHING - IN_PLACE
    assert not undescribed, f"describe the outputs of {undescribed} in OUTPUTS (or WRITES_NOTHING)"
    with_out = {name for name, options in commands.items() if "--out" in options}
    assert with_out == set(OUTPUTS), "a command with --out is in OUTPUTS, and only those"
    assert all("--overwrite" in commands[name] for name in OUTPUTS), "every --out can be replaced with --overwrite"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    data = write_colour_dataset(root / "data")
    invoke("train", data, *TINY_TRAIN, "--out", root / "run")
    return World(root, data, root / "run")


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file below `folders` (links as links), by its bytes."""
    files = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                files[str(path)] = f"link to {path.readlink()}"
            elif path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                files[str(path)] = "folder"
    return files


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _user_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(USER_BYTES)
    return path


def _folder_with_files(tmp_path: Path, name: str) -> Path:
    _user_file(tmp_path, f"{name}/notes.txt")
    return tmp_path / name


# Hostile --out values: (world, tmp_path, what --out names) -> the path. None: not a target for it.
TARGETS = {
    "an existing user file": lambda w, tmp, kind: _user_file(tmp, "mine" + ("" if kind == "folder" else kind)),
    "a run's model.keras": lambda w, tmp, kind: w.run / "model.keras",
    "a file of a run": lambda w, tmp, kind: w.run / ("penalty.png" if kind != "folder" else "labels.txt"),
    "a new name inside a run": lambda w, tmp, kind: w.run / ("inner" + ("" if kind == "folder" else kind)),
    "an image inside DATA": lambda w, tmp, kind: w.image if kind != ".npz" else w.image.with_suffix(".npz"),
    "a new name inside DATA": lambda w, tmp, kind: w.data / "train" / ("new" + ("" if kind == "folder" else kind)),
    "a foreign folder with files": lambda w, tmp, kind: _folder_with_files(tmp, "foreign" + (
        "" if kind == "folder" else kind)),
    "the run itself": lambda w, tmp, kind: w.run,
    "the dataset itself": lambda w, tmp, kind: w.data,
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("command", OUTPUTS)
def test_no_command_writes_over_what_a_user_owns(world, tmp_path, command, target):
    arguments, kind = OUTPUTS[command]
    out = TARGETS[target](world, tmp_path, kind)
    if command == "train" and target == "the run itself":
        pytest.skip("train --out RUN without --overwrite is refused by the same rule (tested with --overwrite below)")
    before = snapshot(world.root, tmp_path)
    for flags in ((), ("--overwrite",)):
        one_line_error(runner.invoke(app, [str(part) for part in (*arguments(world, out), *flags)], terminal_width=400))
        assert snapshot(world.root, tmp_path) == before


@pytest.mark.parametrize("command", OUTPUTS)
def test_a_read_only_folder_is_refused_before_any_work(world, tmp_path, make_read_only, command):
    arguments, kind = OUTPUTS[command]
    locked = make_read_only(_folder_with_files(tmp_path, "locked"))
    before = snapshot(world.root, tmp_path)
    out = locked / ("out" + ("" if kind == "folder" else kind))
    one_line_error(runner.invoke(app, [str(part) for part in arguments(world, out)], terminal_width=400))
    assert snapshot(world.root, tmp_path) == before


@pytest.mark.parametrize("command", [name for name, (_, kind) in OUTPUTS.items() if kind != "folder"])
def test_a_file_output_refuses_a_folder_and_another_format(world, tmp_path, command):
    arguments, kind = OUTPUTS[command]
    folder = _folder_with_files(tmp_path, "folder" + kind)
    before = snapshot(world.root, tmp_path)
    message = one_line_error(runner.invoke(app, [str(part) for part in arguments(world, folder)], terminal_width=400))
    assert "is a folder" in message
    other = tmp_path / ("picture.jpg" if kind == ".png" else "features.csv")
    message = one_line_error(runner.invoke(app, [str(part) for part in arguments(world, other)], terminal_width=400))
    assert f"must end in {kind}" in message and not other.exists()
    assert snapshot(world.root, tmp_path) == before


@pytest.mark.parametrize("command", OUTPUTS)
def test_an_earlier_output_is_replaced_only_with_overwrite_keeping_a_users_files(world, tmp_path, command):
    arguments, kind = OUTPUTS[command]
    out = tmp_path / ("out" + ("" if kind == "folder" else kind))
    invoke(*arguments(world, out))
    if kind == "folder":
        _user_file(out, "notes.txt")
        _user_file(out, "keep/mine.txt")
    before = snapshot(world.root, tmp_path)
    one_line_error(runner.invoke(app, [str(part) for part in arguments(world, out)], terminal_width=400))
    assert snapshot(world.root, tmp_path) == before

    invoke(*arguments(world, out), "--overwrite")
    after = snapshot(world.root)
    assert after == {path: digest for path, digest in before.items() if path in after}, "the world is unchanged"
    if kind == "folder":
        assert (out / "notes.txt").read_bytes() == USER_BYTES and (out / "keep" / "mine.txt").read_bytes() == USER_BYTES


def test_a_default_output_is_refreshed_but_never_over_a_users_file(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("augment", world.data, "--samples", 1, "--variants", 1, "--image-size", 16)
    first = (tmp_path / "augment_preview.png").read_bytes()
    invoke("augment", world.data, "--samples", 1, "--variants", 2, "--image-size", 16)  # refreshed: tlcli wrote it
    assert (tmp_path / "augment_preview.png").read_bytes() != first
    (tmp_path / "augment_preview.png").write_bytes(USER_BYTES)
    result = runner.invoke(app, ["augment", str(world.data), "--overwrite"], terminal_width=400)
    assert "tlcli did not write it" in one_line_error(result)
    assert (tmp_path / "augment_preview.png").read_bytes() == USER_BYTES


def _partial_files(out: Path) -> int:
    return sum(1 for folder in out.parent.glob(f".{out.name}.partial-*") for _ in folder.rglob("*"))


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["explain", "export"])
def test_a_kill_leaves_the_earlier_output_whole_and_the_rerun_tidies_up(world, tmp_path, command):
    out = tmp_path / "out"
    images = tmp_path / "images"
    images.mkdir()
    for number in range(40):  # enough images that explain is killed part-way through them
        shutil.copy(world.image, images / f"{number:02d}.png")
    arguments = {"explain": ("explain", world.run, images, "--out", out),
                 "export": ("export", world.run, "--format", "saved_model", "--format", "keras", "--out", out)}[command]
    invoke(*arguments)
    earlier = snapshot(out)
    kill_when([sys.executable, "-m", "tlcli", *arguments, "--overwrite"], lambda: _partial_files(out) >= 3)
    assert snapshot(out) == earlier, "a kill leaves the earlier output as it was"
    invoke(*arguments, "--overwrite")
    assert _partial_files(out) == 0 and not list(tmp_path.glob(".out.*-*")), "the rerun removed what the kill left"
