"""Output folders: what --overwrite may replace, the lock on --out, and outputs that cannot be
written, each as a user meets them on real files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, runner, source_env
from tlcli.cli import app
from tlcli.runs.outputs import output_kind

TINY = (*TINY_TRAIN, "--epochs", 1)
EXTRACT = TINY_TRAIN[:-1]  # the backbone and size, without --quiet


def refused(*args) -> str:
    """Run a tlcli command that must fail as bad input does: exit 2 and one `Error:` line, no traceback."""
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output + repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def succeeded(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) and its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def mydata(colour_dataset, tmp_path) -> Path:
    """A user's own copy of the dataset (`cp -r DATA mydata`), free to be endangered."""
    return Path(shutil.copytree(colour_dataset, tmp_path / "mydata"))


# The commands that write a folder, as a user types them; `out` is the --out folder.
def train_command(tiny_run, data, out):
    return ["train", data, *TINY, "--out", out]


def tune_command(tiny_run, data, out):
    return ["tune", data, *TINY, "--search", "random", "--trials", 1, "--out", out]


def export_command(tiny_run, data, out):
    return ["export", tiny_run, "--format", "keras", "--no-verify", "--data", data, "--out", out]


def finetune_command(tiny_run, data, out):
    return ["finetune", tiny_run, "--data", data, "--stage", "block3:1:1e-4", "--quiet", "--out", out]


def evaluate_command(tiny_run, data, out):
    return ["evaluate", tiny_run, data, "--out", out]


FOLDER_WRITERS = {"train": train_command, "tune": tune_command, "export": export_command}


# --- --overwrite replaces only what tlcli made ----------------------------------------------------


@pytest.mark.parametrize("command", FOLDER_WRITERS)
@pytest.mark.parametrize("where", ["the dataset itself", "a folder inside it", "a folder holding it"])
def test_overwrite_never_touches_the_dataset(command, where, tiny_run, mydata, tmp_path):
    out = {"the dataset itself": mydata, "a folder inside it": mydata / "run", "a folder holding it": tmp_path}[where]
    before = snapshot(tmp_path)
    message = refused(*FOLDER_WRITERS[command](tiny_run, mydata, out), "--overwrite")
    assert "the dataset" in message and str(mydata) in message
    after = snapshot(tmp_path)
    assert after == before  # every image kept, nothing else added


@pytest.mark.parametrize("command", FOLDER_WRITERS)
def test_overwrite_never_deletes_a_folder_tlcli_did_not_make(command, tiny_run, mydata, tmp_path):
    precious = tmp_path / "precious"
    (precious / "photos").mkdir(parents=True)
    (precious / "notes.txt").write_text("years of work")
    (precious / "photos" / "labels.txt").write_text("not a run\n")  # tlcli's file names alone prove nothing
    (precious / "config.json").write_text(json.dumps({"name": "my project"}))
    before = snapshot(precious)
    for flags in ((), ("--overwrite",)):
        message = refused(*FOLDER_WRITERS[command](tiny_run, mydata, precious), *flags)
        assert "did not write" in message and "--overwrite" in message
    assert snapshot(precious) == before


@pytest.mark.parametrize("command", [*FOLDER_WRITERS, "finetune", "evaluate"])
@pytest.mark.parametrize("where", ["the file itself", "a path under it"])
def test_an_existing_file_is_never_replaced_by_a_folder(command, where, tiny_run, mydata, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    out = notes if where == "the file itself" else notes / "run"
    writers = {**FOLDER_WRITERS, "finetune": finetune_command, "evaluate": evaluate_command}
    flags = [] if command == "evaluate" else ["--overwrite"]  # evaluate has no --overwrite
    message = refused(*writers[command](tiny_run, mydata, out), *flags)
    assert f"{notes} is a file, where a folder is needed" in message
    assert notes.read_text() == "keep me" and sorted(path.name for path in tmp_path.iterdir()) == ["mydata", "notes.txt"]


def write_files(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


EARLIER_RUN = {"config.json": json.dumps({"kind": "train", "model": "vgg16"}), "labels.txt": "cat\ndog\n"}
EARLIER_TUNE = {"tune.json": json.dumps({"search": "grid", "objective": "val_loss", "space": {}})}
EARLIER_EXPORT = {"metadata.json": json.dumps({"files": {"keras": "model.keras"}, "class_names": ["cat"]}),
                  "labels.txt": "cat\n"}


FOLDERS = {
    "marked run": ({".tlcli": json.dumps({"kind": "run"})}, "run"),
    "marked search": ({".tlcli": json.dumps({"kind": "tune"}), "best.toml": ""}, "tune"),
    "marked export": ({".tlcli": json.dumps({"kind": "export"}), "model.keras": ""}, "export"),
    # Folders of earlier versions, known by the files they always wrote.
    "earlier run": (EARLIER_RUN, "run"),
    "earlier fine-tuning run": ({**EARLIER_RUN, "config.json": json.dumps({"kind": "finetune"})}, "run"),
    "earlier interrupted run": ({**EARLIER_RUN, ".in-progress": ""}, "run"),
    "earlier search": (EARLIER_TUNE, "tune"),
    "earlier export": (EARLIER_EXPORT, "export"),
    # A user's folders that merely look alike.
    "empty": ({}, None),
    "marker of no kind": ({".tlcli": json.dumps({"kind": "holidays"})}, None),
    "damaged marker": ({".tlcli": "not json", **EARLIER_RUN}, None),
    "config without labels": ({"config.json": json.dumps({"kind": "train"})}, None),
    "config without kind": ({"config.json": json.dumps({"model": "vgg16"}), "labels.txt": "cat\n"}, None),
    "config of another kind": ({"config.json": json.dumps({"kind": "deployment"}), "labels.txt": "cat\n"}, None),
    "config not json": ({"config.json": "{not json", "labels.txt": "cat\n"}, None),
    "tune.json of something else": ({"tune.json": json.dumps({"search": "grid"})}, None),
    "metadata without labels": ({"metadata.json": json.dumps({"files": [], "class_names": []})}, None),
    "metadata of something else": ({"metadata.json": json.dumps({"title": "holiday"}), "labels.txt": "cat\n"}, None),
}


@pytest.mark.parametrize("files, kind", FOLDERS.values(), ids=FOLDERS)
def test_tlcli_recognises_its_own_folders_and_nothing_else(files, kind, tmp_path):
    assert output_kind(write_files(tmp_path / "folder", files)) == kind
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    assert output_kind(tmp_path / "link") is None  # --overwrite would delete where the link points


def test_overwrite_replaces_a_run_of_an_earlier_version(tiny_run, mydata, tmp_path):
    earlier = Path(shutil.copytree(tiny_run, tmp_path / "earlier"))
    (earlier / ".tlcli").unlink()  # as runs were before the marker
    (earlier / "stale.txt").write_text("from the earlier run")
    assert "already exists" in refused(*train_command(tiny_run, mydata, earlier))
    succeeded(*train_command(tiny_run, mydata, earlier), "--overwrite")
    assert not (earlier / "stale.txt").exists() and json.loads((earlier / ".tlcli").read_text())["kind"] == "run"
    assert json.loads((earlier / "config.json").read_text())["data"] == str(mydata.resolve())


def test_overwrite_refuses_another_kind_of_tlcli_folder(tiny_run, mydata, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = snapshot(run)
    message = refused(*export_command(tiny_run, mydata, run), "--overwrite")
    assert "holds a training run, not an export" in message
    assert snapshot(run) == before


# --- one writer at a time -------------------------------------------------------------------------


def tlcli_process(arguments, **kwargs) -> subprocess.Popen:
    """The installed tlcli in a process of its own, importing the code under test."""
    return subprocess.Popen([sys.executable, "-m", "tlcli", *map(str, arguments)], env=source_env(), text=True,
                            **kwargs)


def run_tlcli(*commands) -> list[subprocess.CompletedProcess]:
    """Run tlcli commands, each in its own process, all at once; wait for every one."""
    processes = [tlcli_process(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for arguments in commands]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


@contextlib.contextmanager
def frozen_while_writing(arguments, out: Path, written: str | None):
    """A first tlcli command, frozen (SIGSTOP) once it holds --out and has written `written` into
    it: it keeps its lock as long as it lives. Killed (SIGKILL) when the block ends."""
    lock = out.parent / f".{out.name}.lock"
    first = tlcli_process(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not (lock.exists() and lock.read_text().startswith(f"{first.pid} ")
                   and (written is None or (out / written).exists())):
            assert first.poll() is None and time.monotonic() < deadline, "the first command never got going"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)
        yield first
    finally:
        first.kill()
        first.wait()


def assert_in_use(results, out: Path, first: subprocess.Popen) -> None:
    for second in results:
        assert second.returncode == 2, second.stderr
        assert f"--out {out} is in use by process {first.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr


@pytest.mark.subprocess  # real tlcli processes, frozen (SIGSTOP) and killed (SIGKILL)
def test_a_second_run_is_refused_whatever_its_flags_and_a_killed_one_leaves_no_lock(tiny_run, mydata, tmp_path):
    out = tmp_path / "run"
    arguments = train_command(tiny_run, mydata, out)
    with frozen_while_writing(arguments, out, "config.json") as first:
        before = snapshot(out)
        seconds = run_tlcli(arguments, arguments + ["--overwrite"], arguments + ["--resume"])
        assert_in_use(seconds, out, first)
        assert snapshot(out) == before  # not mixed: the first run's folder is untouched
    # SIGKILL ended the first run, and the kernel dropped its lock with it.
    (again,) = run_tlcli(arguments + ["--overwrite"])
    assert again.returncode == 0, again.stderr
    assert (out / "model.keras").is_file() and not (tmp_path / ".run.lock").exists()


@pytest.mark.subprocess  # real tlcli processes, frozen (SIGSTOP) and killed (SIGKILL)
@pytest.mark.parametrize("command, written", [("tune", "tune.json"), ("export", None)])
def test_a_search_or_export_in_progress_keeps_its_out_to_itself(command, written, tiny_run, mydata, tmp_path):
    out = tmp_path / "out"
    arguments = FOLDER_WRITERS[command](tiny_run, mydata, out)
    with frozen_while_writing(arguments, out, written) as first:
        before = snapshot(out) if out.exists() else None
        assert_in_use(run_tlcli(arguments + ["--overwrite"]), out, first)
        assert (snapshot(out) if out.exists() else None) == before


@pytest.mark.parametrize("command", FOLDER_WRITERS)
def test_an_out_another_writer_holds_is_refused_whatever_the_flags(command, hold_lock, tiny_run, mydata, tmp_path):
    """In this process (the lock held by another thread): what the tests above show across processes."""
    out = Path(shutil.copytree(tiny_run, tmp_path / "out"))
    hold_lock(out, "a training run")
    before = snapshot(out)
    arguments = FOLDER_WRITERS[command](tiny_run, mydata, out)
    for flags in ((), ("--overwrite",), ("--resume",))[: 2 if command == "export" else 3]:  # export has no --resume
        message = refused(*arguments, *flags)
        assert message == (f"Error: --out {out} is in use by process {os.getpid()}, which is writing a training run "
                           "there. Wait for it to finish, or choose another --out.")
    assert snapshot(out) == before


# --- outputs that cannot be written ---------------------------------------------------------------


WRITERS = {
    **FOLDER_WRITERS,
    "extract": lambda run, data, out: ["extract", data, *EXTRACT, "--quiet", "--out", out / "features.npz"],
    "evaluate": evaluate_command,
    "augment": lambda run, data, out: ["augment", data, "--samples", 2, "--variants", 1, "--out", out / "grid.png"],
}


@pytest.mark.parametrize("command", WRITERS)
def test_a_read_only_location_is_one_line_and_writes_nothing(command, tiny_run, mydata, tmp_path, make_read_only):
    locked = tmp_path / "locked"
    locked.mkdir()
    make_read_only(locked)
    message = refused(*WRITERS[command](tiny_run, mydata, locked / "new"))
    assert f"cannot write in {locked}" in message and "write to" in message
    assert list(locked.iterdir()) == [] and sorted(path.name for path in tmp_path.iterdir()) == ["locked", "mydata"]


def test_evaluate_into_a_read_only_run_directory_is_one_line(tiny_run, mydata, tmp_path, make_read_only):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = snapshot(run)
    make_read_only(run)
    message = refused("evaluate", run, mydata)
    assert f"The run directory {run}" in message and f"cannot write in {run}" in message and "--out" in message
    assert snapshot(run) == before


@pytest.mark.parametrize("name, content", [("x.h5", "not weights at all\n"), ("x.keras", "nor a model\n")])
@pytest.mark.parametrize("command", ["train", "extract"])
def test_a_weights_file_of_the_wrong_kind_is_one_line(name, content, command, mydata, tmp_path):
    weights = tmp_path / name
    weights.write_text(content)
    out = tmp_path / ("run" if command == "train" else "features.npz")
    message = refused(command, mydata, "--model", "tinynet", "--weights", weights, "--image-size", 32, "--out", out)
    assert f"--weights {weights} is not" in message and "Expected" in message
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "finetune"])
def test_a_run_with_a_damaged_config_is_one_line(command, tiny_run, mydata, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (run / "config.json").write_text('{"model": "tinynet", "image_size": 3')  # cut short
    arguments = {
        "evaluate": ["evaluate", run, mydata],
        "predict": ["predict", run, mydata / "test"],
        "export": ["export", run, "--no-verify", "--out", tmp_path / "export"],
        "finetune": ["finetune", run, "--data", mydata, "--out", tmp_path / "tuned"],
    }[command]
    message = refused(*arguments)
    assert f"{run / 'config.json'} cannot be read as JSON" in message and "restore it" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mydata", "run"]


# --- a run that never finished an epoch -----------------------------------------------------------


def test_a_bad_setting_in_a_config_file_is_refused_before_anything_is_written(mydata, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text("batch_size = 1.5\n")
    message = refused(*train_command(None, mydata, tmp_path / "run"), "--config", settings)
    assert "--batch-size 1.5 is not a whole number" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("marked", [False, True], ids=["earlier version", "this version"])
def test_a_run_that_never_finished_an_epoch_starts_again_without_resume(marked, tiny_run, mydata, tmp_path):
    # What a run that crashed before its first epoch ended leaves behind.
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "labels.txt") + ((".tlcli",) if marked else ()):
        shutil.copy(tiny_run / name, run / name)
    (run / ".in-progress").write_text("")
    succeeded(*train_command(tiny_run, mydata, run))
    assert (run / "model.keras").is_file() and not (run / ".in-progress").exists()


def test_a_run_with_a_finished_epoch_still_needs_resume_or_overwrite(tiny_run, mydata, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (run / "model.keras").unlink()
    (run / ".in-progress").write_text("")  # killed after its epochs were recorded in history.csv
    before = snapshot(run)
    message = refused(*train_command(tiny_run, mydata, run))
    assert "holds an interrupted run" in message and "--resume" in message and "--overwrite" in message
    assert snapshot(run) == before


# --- parent folders -------------------------------------------------------------------------------


def test_export_creates_the_folders_above_out(tiny_run, tmp_path):
    out = tmp_path / "new" / "deeper" / "model"
    succeeded("export", tiny_run, "--format", "keras", "--no-verify", "--out", out)
    assert (out / "model.keras").is_file() and json.loads((out / ".tlcli").read_text())["kind"] == "export"
