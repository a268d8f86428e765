"""Datasets at URLs: DATA, --labels and packed datasets, read through TensorFlow's file systems.

One scenario across the data modules (walk, dataset, labels, packed, check_cache), so it stands apart
from their test modules: what each reads from a folder, it reads from a URL.

`ram://` (TensorFlow's in-memory file system, within this process) and `file://` URLs run the
code that serves `gs://`, without a network.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from helpers import DATA_READERS, TINY_TRAIN, copy_to_url, invoke, runner
from tlcli.data import images
from tlcli.data.dataset import SplitOptions, load_dataset, scan
from tlcli.data.labels import LabelFile
from tlcli.data.packed import INDEX



def _ram(tmp_path: Path) -> str:
    return f"ram://{uuid.uuid4().hex[:8]}/data"


def _file(tmp_path: Path) -> str:
    return (tmp_path / "bucket" / "data").as_uri()


SCHEMES = {"ram": _ram, "file": _file}


def _relative(path, root) -> str:
    return str(path)[len(str(root)):].lstrip("/")


def _seen(found, root) -> tuple:
    """A scan as a user sees it: files per split and class, what each turned out to be, problems."""
    files = {split: {name: [_relative(path, root) for path in paths] for name, paths in classes.items()}
             for split, classes in found.files.items()}
    checked = {_relative(path, root): result if isinstance(result, images.ImageInfo) else result.reason
               for path, result in found.checked.items()}
    problems = [(_relative(problem.path, root), problem.reason) for problem in found.problems]
    return files, checked, problems


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_dataset_at_a_url_is_read_as_its_folder_is(messy_dataset, tmp_path, scheme):
    url = copy_to_url(messy_dataset, SCHEMES[scheme](tmp_path))
    assert _seen(scan(url), url) == _seen(scan(messy_dataset), messy_dataset)
    from_url, from_folder = load_dataset(url), load_dataset(messy_dataset)
    assert from_url.class_names == from_folder.class_names
    for split, samples in from_folder.splits.items():
        assert [(_relative(s.path, url), s.label, s.needs_pil) for s in from_url.splits[split]] == \
            [(_relative(s.path, messy_dataset), s.label, s.needs_pil) for s in samples]


def _weights(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["weights_sha256"]


def _answers(run: Path, data, out: Path) -> tuple[dict, list]:
    """`run` evaluated on `data` (its report) and its predictions for `data`'s red test images."""
    report = json.loads(invoke("evaluate", run, data, "--json", "--out", out).stdout)
    return report, json.loads(invoke("predict", run, f"{data}/test/red", "--format", "json").stdout)


@pytest.fixture(scope="module")
def folder_answers(colour_dataset, solved_run, tmp_path_factory) -> tuple[dict, list]:
    return _answers(solved_run, colour_dataset, tmp_path_factory.mktemp("folder-reports"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_model_trained_from_a_url_is_the_one_the_folder_gives(colour_dataset, solved_run, folder_answers, tmp_path,
                                                                 scheme):
    """`solved_run` is the run the folder gives (the same data and options)."""
    url = copy_to_url(colour_dataset, SCHEMES[scheme](tmp_path))
    invoke("train", url, *TINY_TRAIN, "--out", tmp_path / "url")
    assert _weights(tmp_path / "url") == _weights(solved_run)
    assert json.loads((tmp_path / "url" / "config.json").read_text())["data"] == url  # the URL, as given

    # Evaluated and predicted from the URL, the run scores what the folder scores.
    url_answers = _answers(solved_run, url, tmp_path / "url-reports")
    reports, predictions = zip(folder_answers, url_answers)
    shown = [{key: value for key, value in report.items() if key not in ("data", "data_description", "reports")}
             for report in reports]
    assert shown[0] == shown[1] and reports[1]["accuracy"] > 0.9
    assert [row["prediction"] for row in predictions[0]] == [row["prediction"] for row in predictions[1]]
    assert [row["path"] for row in predictions[1]] == [f"{url}/test/red/red_{number}.png" for number in range(4)]


def test_a_label_file_at_a_url_names_images_in_a_bucket(colour_dataset, tmp_path):
    rows = ["path,label"] + [f"{path.relative_to(colour_dataset / 'train').with_suffix('').as_posix()},{path.parent.name}"
                             for path in sorted((colour_dataset / "train").rglob("*.png"))]
    rows += ["red/missing.png,red", "green/green_0.png,green"]  # a file that is not there, a row listed twice
    folder = tmp_path / "listed"
    shutil.copytree(colour_dataset / "train", folder)
    (folder / "extra.png").write_bytes((folder / "red" / "red_0.png").read_bytes())  # an image no row names
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    url = copy_to_url(folder, _ram(tmp_path))
    csv_url = url.replace("/data", "/labels.csv")
    import tensorflow as tf

    tf.io.gfile.copy(str(tmp_path / "labels.csv"), csv_url)
    options = SplitOptions(val_split=0.25)
    from_url = load_dataset(url, options, labels=LabelFile.parse(csv_url))
    from_folder = load_dataset(folder, options, labels=LabelFile.parse(tmp_path / "labels.csv"))
    assert from_url.class_names == from_folder.class_names == ("blue", "green", "red")
    for split, samples in from_folder.splits.items():
        assert [(_relative(s.path, url), s.label) for s in from_url.splits[split]] == \
            [(_relative(s.path, folder), s.label) for s in samples]
    assert [(_relative(p.path, url), p.reason) for p in from_url.problems] == \
        [(_relative(p.path, folder), p.reason) for p in from_folder.problems]
    assert len(from_url.problems) == 2
    assert any("extra.png" in note for note in from_url.notes)


def test_a_packed_dataset_in_a_bucket_trains_the_model_it_trains_on_disk(packed_colours, tmp_path):
    url = copy_to_url(packed_colours, _ram(tmp_path))
    invoke("train", packed_colours, *TINY_TRAIN, "--out", tmp_path / "disk")
    invoke("train", url, *TINY_TRAIN, "--out", tmp_path / "bucket")
    assert _weights(tmp_path / "bucket") == _weights(tmp_path / "disk")
    shown = json.loads(invoke("inspect", url, "--json").output)
    assert shown["layout"] == "packed" and shown["counts"] == json.loads(
        invoke("inspect", packed_colours, "--json").output)["counts"]


def test_a_dataset_in_a_bucket_packs_as_its_folder_does(colour_dataset, packed_colours, tmp_path):
    url = copy_to_url(colour_dataset, _ram(tmp_path))
    invoke("pack", url, "--out", tmp_path / "pack", "--shard-mb", 0.004, "--quiet")
    from_url, from_folder = load_dataset(tmp_path / "pack"), load_dataset(packed_colours)
    for split, samples in from_folder.splits.items():
        assert [(_relative(s.path, url), s.label) for s in from_url.splits[split]] == \
            [(_relative(s.path, colour_dataset), s.label) for s in samples]
    index = json.loads((tmp_path / "pack" / INDEX).read_text())
    assert index["source"]["data"] == url
    assert index["source"]["sha256"] == json.loads((packed_colours / INDEX).read_text())["source"]["sha256"]


def test_a_truncated_shard_in_a_bucket_is_one_line_and_nothing_is_written(packed_colours, tmp_path):
    import tensorflow as tf

    url = copy_to_url(packed_colours, _ram(tmp_path))
    shard = sorted(tf.io.gfile.glob(f"{url}/train-*.tfrecord"))[0]
    content = tf.io.gfile.GFile(shard, "rb").read()
    with tf.io.gfile.GFile(shard, "wb") as handle:
        handle.write(content[:-100])
    result = invoke("train", url, *TINY_TRAIN, "--out", tmp_path / "run", expect=2)
    assert f"{url}/{INDEX} does not match its shards" in " ".join(result.output.split())
    assert result.output.strip().count("Error") == 1 and not (tmp_path / "run").exists()


def test_a_dataset_at_a_file_url_is_checked_once_and_again_when_a_file_changes(colour_dataset, tmp_path, monkeypatch):
    url = copy_to_url(colour_dataset, _file(tmp_path))
    for path in (tmp_path / "bucket").rglob("*.png"):  # written just now: older than the racy window
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**10))
    checked = []
    real = images.check_image
    monkeypatch.setattr(images, "check_image", lambda path: checked.append(path) or real(path))
    first = scan(url)
    assert len(checked) == 48
    checked.clear()
    assert _seen(scan(url), url) == _seen(first, url) and checked == []  # the second scan opens no file

    changed = tmp_path / "bucket" / "data" / "val" / "red" / "red_0.png"
    changed.write_bytes((colour_dataset / "val" / "blue" / "blue_0.png").read_bytes() + b"\0")
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**10))  # older than the racy window
    scan(url)
    assert [str(path) for path in checked] == [f"{url}/val/red/red_0.png"]


@pytest.mark.slow
@pytest.mark.parametrize("command", DATA_READERS)
def test_every_command_reads_a_dataset_at_a_url_as_its_folder(command, colour_dataset, tiny_run, tmp_path):
    url = copy_to_url(colour_dataset, _ram(tmp_path))
    arguments, same = DATA_READERS[command]
    invoke(*arguments(tiny_run, colour_dataset, tmp_path / "folder"))
    invoke(*arguments(tiny_run, url, tmp_path / "url"))
    same(tmp_path / "folder", tmp_path / "url")


@pytest.mark.parametrize(
    "data, message",
    [
        ("foo://bucket/data", "Error: Dataset foo://bucket/data: TensorFlow has no file system for foo:// URLs"),
        ("ram://tlcli-nothing/data", "Error: Dataset folder ram://tlcli-nothing/data does not exist"),
        # No network here: the store cannot be reached. With one, an absent bucket or a denied one is
        # its own line; each names the URL.
        ("gs://tlcli-no-such-bucket-4f1c/data", "Error: Dataset gs://tlcli-no-such-bucket-4f1c/data"),
    ],
)
def test_a_url_that_cannot_be_read_is_one_line(data, message, tmp_path):
    from tlcli.cli import app

    for command in (("inspect", data), ("train", data, *TINY_TRAIN, "--out", tmp_path / "run")):
        result = runner.invoke(app, [str(arg) for arg in command], terminal_width=400)  # a line is not wrapped
        assert result.exit_code == 2
        assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
