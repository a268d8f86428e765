"""tlcli.runs.outputs: the output policy's rules, on plain folders and files."""

from __future__ import annotations

import json

import pytest
from helpers import png_bytes

from tlcli.errors import TlcliError
from tlcli.runs.atomic import sign_png, write_atomic
from tlcli.runs.locks import locks_outputs
from tlcli.runs.outputs import (
    building,
    claim_file,
    claim_output,
    finish_output_dir,
    kept_note,
    start_output_dir,
    user_files,
)


def finished_folder(path, kind="explain", files=("a.png", "sub/b.json")):
    start_output_dir(path, kind)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(name)
    finish_output_dir(path)
    return path


def test_a_finished_folder_lists_what_tlcli_wrote(tmp_path):
    folder = finished_folder(tmp_path / "out")
    marker = json.loads((folder / ".tlcli").read_text())
    assert marker["kind"] == "explain" and marker["files"] == ["a.png", "sub/", "sub/b.json"]
    assert user_files(folder) == []


def test_starting_again_keeps_and_names_a_users_files(tmp_path):
    folder = finished_folder(tmp_path / "out")
    (folder / "notes.txt").write_text("mine")
    (folder / "keep").mkdir()
    (folder / "sub" / "mine.txt").write_text("mine too")
    assert user_files(folder) == ["keep/", "notes.txt", "sub/mine.txt"]
    kept = start_output_dir(folder, "explain")
    assert kept == ["keep/", "notes.txt", "sub/mine.txt"]
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) == [
        ".in-progress", ".tlcli", "keep", "notes.txt", "sub", "sub/mine.txt"]
    (folder / "c.png").write_text("new")
    finish_output_dir(folder)
    assert user_files(folder) == ["keep/", "notes.txt", "sub/mine.txt"]
    assert kept_note(folder) == f"kept keep/, notes.txt, sub/mine.txt in {folder}: tlcli did not write them"


def test_a_folder_built_beside_carries_a_users_files_across(tmp_path):
    folder = finished_folder(tmp_path / "out")
    (folder / "notes.txt").write_text("mine")
    with building(folder, "explain") as built:
        (built / "new.png").write_text("new")
        assert (folder / "a.png").exists(), "the old output stays until the new one is complete"
    assert sorted(path.name for path in folder.iterdir()) == [".tlcli", "new.png", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_failed_build_leaves_the_old_folder_and_no_trace(tmp_path):
    folder = finished_folder(tmp_path / "out")
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with pytest.raises(RuntimeError), building(folder, "explain") as built:
        (built / "half.png").write_text("half")
        raise RuntimeError("killed")
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def claim(path, **options):
    return claim_file(path, suffix=".png", **options)


def test_a_file_is_replaced_only_with_overwrite_and_only_if_tlcli_wrote_it(tmp_path):
    path = tmp_path / "plot.png"
    assert claim(path) == path
    write_atomic(path, png_bytes())
    with pytest.raises(TlcliError, match="already exists. Use --overwrite"):
        claim(path)
    assert claim(path, overwrite=True) == path
    assert claim(path, default=True) == path  # a command's own default output is refreshed
    path.write_bytes(png_bytes())  # the user's own picture now
    with pytest.raises(TlcliError, match="tlcli did not write it"):
        claim(path, overwrite=True)


@pytest.mark.parametrize("name, message", [
    ("plot.jpg", "must end in .png"),
    ("folder.png", "is a folder, where a file is needed"),
    ("data/red/x.png", "lies inside the dataset"),
    ("run/penalty.png", "lies inside a training run"),
    ("run/deeper/new.png", "lies inside a training run"),
])
def test_a_file_claim_refuses_in_one_line(tmp_path, name, message):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "data" / "red").mkdir(parents=True)
    finished_folder(tmp_path / "run", kind="run", files=("penalty.png",))
    with pytest.raises(TlcliError, match=message) as error:
        claim(tmp_path / name, data=tmp_path / "data")
    assert "\n" not in str(error.value)


def test_a_command_may_write_its_own_file_into_a_run(tmp_path):
    run = finished_folder(tmp_path / "run", kind="run", files=("penalty.png",))
    assert claim(run / "lr_find.png", own={"run": ("lr_find*.png",)}) == run / "lr_find.png"
    (run / "lr_find.png").write_bytes(sign_png(png_bytes()))
    assert claim(run / "lr_find.png", default=True, own={"run": ("lr_find*.png",)}) == run / "lr_find.png"


@pytest.mark.parametrize("folder, own", [
    ("run", {"run": ("lr_find*.png",)}),  # the command's own name in the run: run/lr_find.png
    ("run", {}),  # nothing of its own there: beside the run
    ("data", {}),  # never in the dataset: beside it
    ("plots", {}),  # a user's folder: a file in it
])
def test_a_folder_given_for_a_file_is_answered_with_a_name_the_rules_accept(tmp_path, folder, own):
    finished_folder(tmp_path / "run", kind="run", files=("penalty.png",))
    (tmp_path / "data" / "red").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    with pytest.raises(TlcliError, match="is a folder, where a file is needed") as error:
        claim(tmp_path / folder, data=tmp_path / "data", own=own)
    suggested = str(error.value).rsplit("e.g. ", 1)[1].rstrip(".")
    assert claim(suggested, data=tmp_path / "data", own=own) == type(tmp_path)(suggested)


@locks_outputs
def claim_folder(path, kind="explain", **options):
    claim_output(path, kind, **options)


@pytest.mark.parametrize("setup, message", [
    ("foreign", "holds files tlcli did not write"),
    ("run", "holds a training run, not tlcli explain's pictures"),
    ("file", "is a file, where a folder is needed"),
])
def test_a_folder_claim_refuses_what_it_may_not_replace(tmp_path, setup, message):
    out = tmp_path / "out"
    if setup == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif setup == "run":
        finished_folder(out, kind="run")
    else:
        out.write_text("a file")
    with pytest.raises(TlcliError, match=message):
        claim_folder(out, overwrite=True)


def test_a_folder_claim_tidies_what_a_killed_build_left(tmp_path):
    out = finished_folder(tmp_path / "out")
    partial = tmp_path / ".out.partial-deadbeef"
    partial.mkdir()
    (partial / "huge.bin").write_bytes(b"x" * 100)
    claim_folder(out, overwrite=True)
    assert not partial.exists() and (out / "a.png").exists()
