"""Outputs and runs at URLs: TensorFlow's in-memory ram:// file system and file:// URLs take the
code path of gs:// (tlcli.runs.staging), within this process, without a network."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import tomllib

from helpers import TINY_TRAIN, copy_to_url, invoke, read_features, runner

QUICK = (*TINY_TRAIN, "--batch-size", 8)
EXTRACT = TINY_TRAIN[:-1]  # the backbone and size, without --quiet


def ram_url(name: str = "out") -> str:
    """A fresh ram:// folder: that file system lives as long as the process, so every test takes its own."""
    return f"ram://{uuid.uuid4().hex[:12]}/{name}"


def gfile():
    from tlcli.runtime import import_tensorflow

    return import_tensorflow().io.gfile


def read_url(url: str) -> bytes:
    with gfile().GFile(url, "rb") as handle:
        return handle.read()


def url_files(url: str) -> set[str]:
    return {f"{folder}/{name}"[len(url) + 1:] for folder, _, names in gfile().walk(url) for name in names}


def one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def tlcli(*args):
    from tlcli.cli import app

    return runner.invoke(app, [str(arg) for arg in args], terminal_width=400)


def test_a_run_trained_to_ram_evaluates_as_the_same_run_trained_to_a_folder(solved_run, colour_dataset, tmp_path):
    # solved_run is the same command's run in a folder; its reports go to tmp_path, not into it.
    url = ram_url("run")
    trained = invoke("train", colour_dataset, *TINY_TRAIN, "--out", url)
    assert url in trained.output
    assert json.loads(read_url(f"{url}/.tlcli"))["kind"] == "run"
    assert {"model.keras", "config.json", "labels.txt", "metrics.json"} <= url_files(url)
    assert not gfile().exists(f"{url}/.in-progress")
    local_report = json.loads(invoke("evaluate", solved_run, colour_dataset, "--json", "--out", tmp_path).stdout)
    url_report = json.loads(invoke("evaluate", url, colour_dataset, "--json").stdout)
    assert url_report["model"] == f"{url}/model.keras"
    assert url_report["reports"] == [f"{url}/{Path(path).name}" for path in local_report["reports"]]

    def results(report):
        return {key: value for key, value in report.items() if key not in ("model", "reports")}

    assert results(url_report) == results(local_report)
    assert results(json.loads(read_url(f"{url}/evaluation.json"))) == results(local_report)


def test_a_file_url_out_holds_what_a_local_out_holds_file_for_file(solved_run, colour_dataset, tmp_path):
    local, through_url = solved_run, tmp_path / "through-url"  # solved_run: the same command, to a folder
    invoke("train", colour_dataset, *TINY_TRAIN, "--out", f"file://{through_url}")

    def files(folder):
        return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}

    assert files(through_url) == files(local)
    for name in (".tlcli", "labels.txt"):
        assert (through_url / name).read_text() == (local / name).read_text()
    weights = [json.loads((folder / "metrics.json").read_text())["weights_sha256"] for folder in (local, through_url)]
    assert weights[0] == weights[1]


def test_overwrite_never_replaces_a_url_folder_tlcli_did_not_make(colour_dataset):
    url = ram_url("photos")
    gfile().makedirs(url)
    with gfile().GFile(f"{url}/holiday.txt", "w") as handle:
        handle.write("mine")
    message = one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", url, "--overwrite"))
    assert "holds files tlcli did not write" in message and url in message
    assert url_files(url) == {"holiday.txt"}


def test_an_existing_url_run_is_kept_without_overwrite_and_replaced_with_it(solved_run, colour_dataset):
    url = copy_to_url(solved_run, ram_url("run"))
    gfile().makedirs(f"{url}/logs/old")
    with gfile().GFile(f"{url}/logs/old/stale.txt", "w") as handle:
        handle.write("an older run's file")
    marker = json.loads(read_url(f"{url}/.tlcli"))  # which its marker lists as tlcli's
    gfile().remove(f"{url}/.tlcli")  # ram:// appends to a file written again
    with gfile().GFile(f"{url}/.tlcli", "w") as handle:
        handle.write(json.dumps({**marker, "files": [*marker["files"], "logs/old/stale.txt"]}))
    with gfile().GFile(f"{url}/notes.txt", "w") as handle:
        handle.write("the user's own")
    message = one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", url))
    assert "already exists. Use --overwrite" in message
    invoke("train", colour_dataset, *QUICK, "--out", url, "--overwrite")
    assert "logs/old/stale.txt" not in url_files(url)  # the new output has no such file
    assert not gfile().exists(f"{url}/logs/old")
    assert read_url(f"{url}/notes.txt") == b"the user's own"  # a file tlcli did not write stays


def test_a_url_out_inside_the_dataset_is_refused(colour_dataset):
    message = one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", f"file://{colour_dataset}/runs/a"))
    assert "lies inside the dataset" in message
    assert not (colour_dataset / "runs").exists()


def test_an_upload_stopped_part_way_is_refused_by_readers_and_replaced_by_overwrite(colour_dataset, monkeypatch):
    from tlcli.runs import staging

    url = ram_url("run")
    copy = staging.copy_file

    def fail_on_the_model(source, target):
        if Path(source).name == "model.keras":
            raise OSError("the network went away")
        copy(source, target)

    monkeypatch.setattr(staging, "copy_file", fail_on_the_model)
    message = one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", url))
    assert f"--out {url}: the upload stopped part-way (the network went away)" in message
    monkeypatch.setattr(staging, "copy_file", copy)
    assert json.loads(read_url(f"{url}/.tlcli"))["state"] == "uploading"

    for command in (("evaluate", url, colour_dataset), ("export", url, "--out", ram_url("export"))):
        message = one_line_error(tlcli(*command))
        assert f"{url} is still being uploaded, or its upload stopped part-way" in message
    message = one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", url))
    assert "whose upload did not finish" in message and "--overwrite" in message
    one_line_error(tlcli("train", colour_dataset, *QUICK, "--out", url, "--resume"))

    invoke("train", colour_dataset, *QUICK, "--out", url, "--overwrite")
    assert "state" not in json.loads(read_url(f"{url}/.tlcli"))
    invoke("evaluate", url, colour_dataset)


def test_an_error_before_publishing_leaves_the_old_url_output_as_it_was(solved_run, colour_dataset, monkeypatch):
    from tlcli.runs import run_dir

    url = copy_to_url(solved_run, ram_url("run"))
    before = {name: read_url(f"{url}/{name}") for name in url_files(url)}

    def broken(*args, **kwargs):
        raise RuntimeError("a bug half-way through the work")

    monkeypatch.setattr(run_dir, "save_outcome", broken)
    assert tlcli("train", colour_dataset, *QUICK, "--out", url, "--overwrite", "--seed", 1).exit_code != 0
    assert {name: read_url(f"{url}/{name}") for name in url_files(url)} == before


# Trained by gradient without the feature cache, so that every epoch is backed up (no --quiet).
BACKED_UP = (*EXTRACT, "--batch-size", 8, "--head-solver", "gradient", "--no-cache-features", "--epochs", 3)


def interrupt_after_the_first_epoch(monkeypatch, wait_for_the_backup: bool) -> None:
    """Ctrl-C as the first epoch's backup is handed to its writer thread, or once it is written."""
    from tlcli.training.callbacks import Checkpoint

    saved = Checkpoint.on_epoch_end

    def save_then_interrupt(self, epoch, logs=None):
        saved(self, epoch, logs)
        if wait_for_the_backup:
            self._writer.wait()
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "on_epoch_end", save_then_interrupt)


def test_a_run_interrupted_at_a_url_resumes_from_it(colour_dataset, monkeypatch):
    url = ram_url("run")
    with monkeypatch.context() as patched:
        interrupt_after_the_first_epoch(patched, wait_for_the_backup=True)
        interrupted = tlcli("train", colour_dataset, *BACKED_UP, "--quiet", "--out", url)
    message = one_line_error(interrupted, exit_code=130)
    assert message.startswith(f"Error: Interrupted. {url} keeps the last completed epoch")
    assert gfile().exists(f"{url}/.in-progress") and "model.keras" not in url_files(url)
    assert json.loads(read_url(f"{url}/.backup/train/checkpoint.json"))["held"][-1]["epoch"] == 1

    resumed = invoke("train", colour_dataset, *BACKED_UP, "--out", url, "--resume")
    assert "train: resuming from epoch 2." in resumed.output  # from the backup, not from scratch
    history = read_url(f"{url}/history.csv").decode().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    assert not gfile().exists(f"{url}/.in-progress") and "model.keras" in url_files(url)


def test_an_interrupt_while_the_backup_is_written_still_publishes_that_epoch(colour_dataset, monkeypatch):
    """A Ctrl-C in the first moments of an epoch, while the last epoch's backup is still being
    written: the message promises that the URL keeps that epoch."""
    import threading
    import time

    from tlcli.training.callbacks import Checkpoint

    url, write = ram_url("run"), Checkpoint._write

    def slow_write(self, *arguments):
        time.sleep(1)  # a large model's backup takes this long
        write(self, *arguments)

    monkeypatch.setattr(Checkpoint, "_write", slow_write)
    interrupt_after_the_first_epoch(monkeypatch, wait_for_the_backup=False)
    try:
        interrupted = tlcli("train", colour_dataset, *BACKED_UP, "--quiet", "--out", url)
    finally:
        for thread in threading.enumerate():
            if thread.name == "tlcli-checkpoint":
                thread.join()
    message = one_line_error(interrupted, exit_code=130)
    assert message.startswith(f"Error: Interrupted. {url} keeps the last completed epoch")
    assert json.loads(read_url(f"{url}/.backup/train/checkpoint.json"))["held"][-1]["epoch"] == 1


@pytest.mark.subprocess  # export verifies its files in a fresh process
def test_export_to_ram_is_verified_and_reads_back(tiny_run):
    url = ram_url("export")
    exported = invoke("export", tiny_run, "--format", "keras", "--out", url, "--json")
    report = json.loads(exported.stdout)
    assert report["out"] == url and report["files"]["keras"] == f"{url}/model.keras"
    assert report["checks"] and all(check["passed"] for check in report["checks"])
    assert json.loads(read_url(f"{url}/.tlcli"))["kind"] == "export"
    assert read_url(f"{url}/labels.txt") == (tiny_run / "labels.txt").read_bytes()
    assert read_url(f"{url}/model.keras")[:2] == b"PK"


@pytest.mark.subprocess  # export verifies its files in a fresh process
def test_a_run_read_from_a_url_exports_and_fine_tunes_like_the_local_run(tiny_run, colour_dataset, tmp_path):
    url = f"file://{tiny_run}"
    exported = json.loads(invoke("export", url, "--format", "keras", "--out", tmp_path / "export", "--json").stdout)
    assert all(check["passed"] for check in exported["checks"])
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert metadata["source_model"] == f"{url}/model.keras"
    tuned = ram_url("tuned")
    invoke("finetune", url, "--stage", "block3:1:1e-4", "--batch-size", 8, "--out", tuned)
    assert json.loads(read_url(f"{tuned}/config.json"))["source_run"] == url


def test_a_run_read_from_a_url_exports_to_a_url_the_model_it_holds(tiny_run):
    """URL in, URL out, without the fresh-process check: the published model.keras is the run's model."""
    from tlcli.models.saved import load_keras_model

    source, url = f"file://{tiny_run}", ram_url("export")
    report = json.loads(invoke("export", source, "--format", "keras", "--no-verify", "--out", url, "--json").stdout)
    assert report["out"] == url and report["files"]["keras"] == f"{url}/model.keras"
    marker = json.loads(read_url(f"{url}/.tlcli"))
    assert marker["kind"] == "export" and "state" not in marker
    assert json.loads(read_url(f"{url}/metadata.json"))["source_model"] == f"{source}/model.keras"
    assert read_url(f"{url}/labels.txt") == (tiny_run / "labels.txt").read_bytes()
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "model.keras").write_bytes(read_url(f"{url}/model.keras"))
        exported = load_keras_model(Path(scratch) / "model.keras")
    expected = load_keras_model(tiny_run / "model.keras")(pixels, training=False)
    np.testing.assert_allclose(exported(pixels, training=False), expected, atol=1e-6)


def test_a_run_read_from_a_url_fine_tunes_into_a_url(tiny_run):
    source, tuned = f"file://{tiny_run}", ram_url("tuned")
    invoke("finetune", source, "--stage", "block3:1:1e-4", "--batch-size", 8, "--quiet", "--out", tuned)
    assert json.loads(read_url(f"{tuned}/config.json"))["source_run"] == source
    assert json.loads(read_url(f"{tuned}/.tlcli"))["kind"] == "run"
    assert [row.split(",")[:2] for row in read_url(f"{tuned}/history.csv").decode().splitlines()[1:]] == [
        ["1", "stage1-block3"]]


def test_extract_to_a_url_writes_the_file_a_local_extract_writes(colour_dataset, tmp_path):
    options = (*EXTRACT, "--batch-size", 8)
    url = ram_url("features.npz")
    invoke("extract", colour_dataset, *options, "--out", tmp_path / "local.npz")
    invoke("extract", colour_dataset, *options, "--out", url)
    (tmp_path / "fetched.npz").write_bytes(read_url(url))
    local, fetched = read_features(tmp_path / "local.npz"), read_features(tmp_path / "fetched.npz")
    assert local.keys() == fetched.keys()
    for name in local:
        np.testing.assert_array_equal(local[name], fetched[name])
    assert [name for name in gfile().listdir(url.rsplit("/", 1)[0])] == ["features.npz"]  # no temporary left


def test_calibrating_a_url_run_publishes_it_back(tiny_run, calibrated_run):
    _, data, _ = calibrated_run  # validation images the run sometimes gets wrong, so a temperature is fitted
    url = copy_to_url(tiny_run, ram_url("run"))
    result = json.loads(invoke("calibrate", url, "--data", data, "--json").stdout)
    assert result["run_dir"] == url
    metrics = json.loads(read_url(f"{url}/metrics.json"))
    assert metrics["calibration"]["temperature"] == pytest.approx(result["temperature"])
    assert "state" not in json.loads(read_url(f"{url}/.tlcli"))


@pytest.mark.parametrize("command, url", [
    (("train", "{data}", *QUICK, "--out"), "foo://bucket/run"),
    (("train", "{data}", *QUICK, "--out"), "gs://tlcli-no-such-bucket/run"),
    (("evaluate",), "foo://bucket/run"),
    (("evaluate",), "gs://tlcli-no-such-bucket/run"),
    (("train", "{data}", *QUICK, "--weights"), "gs://tlcli-no-such-bucket/run"),
    (("extract", "{data}", *EXTRACT, "--out"),
     "gs://tlcli-no-such-bucket/features.npz"),
    (("augment", "{data}", "--out"), "foo://bucket/preview.png"),
])
def test_an_unknown_scheme_or_an_unreachable_store_is_one_line(colour_dataset, command, url):
    arguments = [str(colour_dataset) if part == "{data}" else part for part in command] + [url]
    if command == ("evaluate",):
        arguments.append(str(colour_dataset))
    message = one_line_error(tlcli(*arguments))
    scheme = url.split("://")[0]
    assert (f"no file system for {scheme}://" if scheme == "foo" else "cannot be reached") in message


def test_a_url_folder_that_is_not_a_run_is_one_line(colour_dataset):
    url = ram_url("empty")
    gfile().makedirs(url)
    message = one_line_error(tlcli("evaluate", url, colour_dataset))
    assert f"{url} is not a tlcli run: model.keras is missing" in message


def test_pack_to_a_url_uploads_its_index_just_before_its_marker(colour_dataset, monkeypatch):
    from tlcli.runs import staging

    url, uploaded = ram_url("pack"), []
    copy = staging.copy_file

    def recording(source, target):
        uploaded.append(Path(source).name)
        copy(source, target)

    monkeypatch.setattr(staging, "copy_file", recording)
    packed = invoke("pack", colour_dataset, "--out", url, "--quiet")
    assert url in packed.output
    assert uploaded[-1] == "tlcli-pack.json" and len(uploaded) > 1
    marker = json.loads(read_url(f"{url}/.tlcli"))
    assert marker["kind"] == "pack" and "state" not in marker
    assert sum(json.loads(read_url(f"{url}/tlcli-pack.json"))["records"].values()) == 48


@pytest.mark.parametrize("command", [
    ("pack", "{data}", "--quiet"),
    ("evaluate", "{run}", "{data}"),
    ("train", "{data}", *QUICK),
])
def test_an_output_in_memory_is_written_then_said_not_to_remain(tiny_run, colour_dataset, command):
    url = ram_url("out")
    arguments = [{"{data}": colour_dataset, "{run}": tiny_run}.get(part, part) for part in command]
    result = tlcli(*arguments, "--out", url)
    assert result.exit_code == 0, result.output
    warning = f"Warning: --out {url} is TensorFlow's in-memory file system: nothing written there remains"
    assert warning in result.output and result.output.index(warning) > result.output.index(url)
    assert json.loads(read_url(f"{url}/.tlcli"))["kind"] in {"pack", "evaluation", "run"}  # written, for now


def test_an_output_on_disk_or_in_a_bucket_gets_no_such_warning(colour_dataset, tmp_path):
    result = tlcli("pack", colour_dataset, "--quiet", "--out", f"file://{tmp_path}/pack")
    assert result.exit_code == 0 and "Warning" not in result.output


def test_explain_to_a_url_names_its_pictures_by_their_url(tiny_run, colour_dataset):
    url = ram_url("maps")
    records = json.loads(invoke("explain", tiny_run, colour_dataset / "test" / "red", "--out", url, "--json").stdout)
    assert records and all(record["picture"].startswith(f"{url}/") for record in records)
    written = json.loads(read_url(f"{url}/explain.json"))
    assert [image["picture"] for image in written["images"]] == [record["picture"] for record in records]
    assert {Path(record["picture"]).name for record in records} <= url_files(url)


def test_a_search_at_a_url_grows_with_resume(colour_dataset, tmp_path):
    url = ram_url("search")
    (tmp_path / "space.toml").write_text("[space]\nlearning_rate = {low = 0.001, high = 0.1, log = true}\n")
    args = ("tune", colour_dataset, *TINY_TRAIN, "--epochs", 1, "--space", tmp_path / "space.toml", "--seed", 3,
            "--out", url)
    invoke(*args, "--trials", 1)
    assert json.loads(read_url(f"{url}/.tlcli"))["kind"] == "tune"
    result = invoke(*args, "--trials", 2, "--resume")
    assert "1 run now, 1 earlier" in result.output
    assert sorted(trial["trial"] for trial in json.loads(read_url(f"{url}/leaderboard.json"))["trials"]) == [1, 2]
    # best.toml is read where it was written, as the search's closing line says.
    assert f"--config {url}/best.toml" in result.output
    invoke("train", "--config", f"{url}/best.toml", colour_dataset, "--quiet", "--out", tmp_path / "best")
    best = tomllib.loads(read_url(f"{url}/best.toml").decode())
    assert json.loads((tmp_path / "best" / "config.json").read_text())["learning_rate"] == best["learning_rate"]


def test_a_run_at_a_url_predicts_as_the_local_run(tiny_run, colour_dataset):
    images = colour_dataset / "test" / "green"
    local = json.loads(invoke("predict", tiny_run, images, "--format", "json").stdout)
    remote = json.loads(invoke("predict", f"file://{tiny_run}", images, "--format", "json").stdout)
    assert remote == local


def test_lr_find_of_a_url_run_writes_its_plot_into_the_run(tiny_run):
    url = ram_url("run")
    gfile().makedirs(url)
    for name in ("model.keras", "config.json", "labels.txt", ".tlcli"):
        gfile().copy(str(tiny_run / name), f"{url}/{name}")
    found = json.loads(invoke("lr-find", url, "--steps", 8, "--batch-size", 8, "--json").stdout)
    assert found["plot"] == f"{url}/lr_find.png"
    assert read_url(f"{url}/lr_find.png")[:4] == b"\x89PNG"


def test_augment_writes_its_preview_to_a_url(colour_dataset):
    url = ram_url("preview.png")
    invoke("augment", colour_dataset, "--out", url, "--samples", 2, "--variants", 2, "--image-size", 32)
    assert read_url(url)[:4] == b"\x89PNG"
    assert gfile().listdir(url.rsplit("/", 1)[0]) == ["preview.png"]  # no temporary name left


@pytest.mark.parametrize("command, name", [
    (("train", "{data}", *QUICK), "run"),
    (("extract", "{data}", *EXTRACT), "features.npz"),
    (("augment", "{data}"), "preview.png"),
])
def test_a_url_out_that_cannot_be_written_is_refused_before_any_work(colour_dataset, tmp_path, make_read_only,
                                                                      command, name):
    folder = tmp_path / "locked"
    folder.mkdir()
    make_read_only(folder)
    arguments = [str(colour_dataset) if part == "{data}" else part for part in command]
    message = one_line_error(tlcli(*arguments, "--out", f"file://{folder}/{name}"))
    assert f"--out file://{folder}/{name}: cannot write there" in message
    assert not any(folder.iterdir())
