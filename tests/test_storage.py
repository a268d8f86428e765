"""`tlcli.storage`: URLs as tlcli's paths, and their failures as one line."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path, PurePosixPath

import pytest

from tlcli.errors import TlcliError
from tlcli.storage import (
    Url,
    atomic_url_file,
    check_readable,
    copy_file,
    fetch,
    file_sha256,
    forget_fetched,
    glob_urls,
    location,
    relative_name,
    remove_tree,
)


def test_a_url_names_its_parts_as_a_path_does():
    url = location("gs://bucket/flowers/train/rose.jpg")
    assert isinstance(url, Url) and str(url) == "gs://bucket/flowers/train/rose.jpg"
    assert (url.name, url.stem, url.suffix) == ("rose.jpg", "rose", ".jpg")
    assert url.parent == Url("gs://bucket/flowers/train") and url.parent / "rose.jpg" == url
    assert url.relative_to(Url("gs://bucket/flowers")) == PurePosixPath("train/rose.jpg")
    assert Url("gs://bucket/flowers/") == Url("gs://bucket/flowers")  # a trailing slash names the same folder
    assert Url("gs://bucket").parent == Url("gs://bucket")
    assert Url("gs://bucket/a") in Url("gs://bucket/a/b/c").parents
    assert location("file:///srv/data") / "x" == Url("file:///srv/data/x")
    assert location("~/data") == Path.home() / "data" and location("data/cats") == Path("data/cats")
    with pytest.raises(ValueError):
        Url("gs://bucket/flowers").relative_to(Url("gs://bucket/cars"))


def test_a_url_reads_lists_and_writes_through_tensorflows_file_systems():
    root = Url(f"ram://{uuid.uuid4().hex[:8]}/folder")
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("one")
    (root / "two.bin").write_bytes(b"\x00\x01")
    assert sorted(child.name for child in root.iterdir()) == ["a", "two.bin"]
    assert (root / "a").is_dir() and (root / "two.bin").is_file() and not (root / "three").exists()
    assert (root / "a" / "one.txt").read_text() == "one" and (root / "two.bin").stat().st_size == 2
    assert sorted(str(item.relative_to(root)) for item in root.rglob()) == ["a", "a/one.txt", "two.bin"]
    with pytest.raises(FileNotFoundError):
        (root / "three").read_bytes()


def test_a_files_sha256_is_the_same_read_locally_or_through_a_url(tmp_path):
    content = bytes(range(256)) * 5000  # more than one 1 MiB block
    local = tmp_path / "shard.bin"
    local.write_bytes(content)
    url = Url(f"ram://{uuid.uuid4().hex[:8]}/shard.bin")
    url.write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    assert file_sha256(local) == file_sha256(str(local)) == file_sha256(url) == file_sha256(str(url)) == expected


def test_a_url_file_appears_whole_or_not_at_all():
    target = Url(f"ram://{uuid.uuid4().hex[:8]}/out/report.json")
    with atomic_url_file(target) as handle:
        handle.write(b"old")
    with pytest.raises(RuntimeError):
        with atomic_url_file(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [child.name for child in target.parent.iterdir()] == ["report.json"]  # no temporary left


@pytest.mark.parametrize("error, message", [
    ("PermissionDeniedError", "Dataset gs://bucket/data: access denied"),
    ("UnauthenticatedError", "Dataset gs://bucket/data cannot be reached"),
])
def test_a_bucket_that_denies_access_or_is_not_there_is_one_line(monkeypatch, error, message):
    # A real bucket cannot be reached from here: the store's answer is what TensorFlow raises for it.
    import tensorflow as tf

    def refuse(name):
        raise getattr(tf.errors, error)(None, None, f"{error} for {name}\nmore detail")

    monkeypatch.setattr(tf.io.gfile, "exists", refuse)
    with pytest.raises(TlcliError) as raised:
        check_readable(Url("gs://bucket/data"), "Dataset")
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def ram_folder(files: dict[str, bytes]) -> Url:
    """A fresh ram:// folder holding `files` (relative name -> bytes)."""
    root = Url(f"ram://{uuid.uuid4().hex[:8]}/folder")
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def test_a_url_refuses_what_it_cannot_do_as_a_path_would():
    with pytest.raises(ValueError, match="is not a URL"):
        Url("data/cats")
    url = Url("gs://bucket/flowers/rose.jpg")
    assert repr(url) == "Url('gs://bucket/flowers/rose.jpg')" and url.as_posix() == str(url)
    assert url.with_suffix(".png") == Url("gs://bucket/flowers/rose.png")
    assert sorted([Url("gs://b/z"), Url("gs://b/a")]) == [Url("gs://b/a"), Url("gs://b/z")]
    with pytest.raises(ValueError, match="UTF-8"):
        url.open("r", encoding="latin-1")
    with pytest.raises(ValueError, match="only '\\*'"):
        list(url.parent.rglob("*.jpg"))
    root = ram_folder({"a.txt": b"a"})
    with pytest.raises(FileExistsError):
        root.mkdir()


def test_a_url_pattern_names_its_matches_sorted_within_one_folder():
    root = ram_folder({"b.jpg": b"", "a.jpg": b"", "c.png": b"", "deeper/d.jpg": b""})
    assert glob_urls(root / "*.jpg") == [root / "a.jpg", root / "b.jpg"]


def test_a_name_is_relative_to_its_root_or_whole_when_outside_it(tmp_path):
    assert relative_name(tmp_path, tmp_path / "train" / "cat.png") == "train/cat.png"
    outside = tmp_path / "elsewhere" / "cat.png"
    assert relative_name(tmp_path / "data", outside) == str(outside)
    root = Url("gs://bucket/data")
    assert relative_name(root, root / "train" / "cat.png") == "train/cat.png"
    assert relative_name(root, Url("gs://other/cat.png")) == "gs://other/cat.png"


def test_files_copy_between_any_two_places_and_folders_are_removed_whole(tmp_path):
    (tmp_path / "one.txt").write_text("one")
    copy_file(tmp_path / "one.txt", tmp_path / "two.txt")
    root = ram_folder({})
    copy_file(tmp_path / "two.txt", root / "two.txt")
    copy_file(root / "two.txt", tmp_path / "three.txt")
    assert (tmp_path / "three.txt").read_text() == "one" and (root / "two.txt").read_text() == "one"
    (tmp_path / "tree" / "deeper").mkdir(parents=True)
    (tmp_path / "tree" / "deeper" / "file").write_text("x")
    for folder in (tmp_path / "tree", root):
        remove_tree(folder)
        assert not folder.exists()


def test_a_url_is_fetched_once_per_process_until_it_is_rewritten():
    root = ram_folder({"model.keras": b"weights", "labels.txt": b"cat\n", "logs/big.bin": b"x" * 100})
    local = fetch(root, "The run", names=("model.keras", "labels.txt", "metrics.json"))  # missing ones skipped
    assert sorted(path.name for path in local.iterdir()) == ["labels.txt", "model.keras"]
    (root / "labels.txt").unlink()  # ram:// appends to a file written again
    (root / "labels.txt").write_bytes(b"dog\n")
    assert fetch(root, "The run", names=("model.keras", "labels.txt", "metrics.json")) == local
    assert (local / "labels.txt").read_text() == "cat\n"  # the copy made once
    forget_fetched(root)  # what a command that rewrote the URL says
    again = fetch(root, "The run", names=("model.keras", "labels.txt", "metrics.json"))
    assert again != local and (again / "labels.txt").read_text() == "dog\n"
    whole = fetch(root, "The run")
    assert sorted(str(path.relative_to(whole)) for path in whole.rglob("*")) == [
        "labels.txt", "logs", "logs/big.bin", "model.keras"]
    assert fetch(root / "model.keras", "--weights").read_bytes() == b"weights"
    assert fetch(Path("runs/a"), "The run") == Path("runs/a")  # a local path is read where it is
    with pytest.raises(TlcliError, match=f"^The run {root}/missing does not exist. Check the URL.$"):
        fetch(root / "missing", "The run")


@pytest.mark.parametrize("url, shown", [
    ("gs://bucket with space/x", "'bucket with space' is not a valid bucket name"),
    ("gs://", "names no bucket"),
    ("gs:///data", "names no bucket"),
    ("gs://UPPER/data", "'UPPER' is not a valid bucket name"),
    ("gs://ab/data", "'ab' is not a valid bucket name"),
])
def test_a_gs_url_without_a_valid_bucket_is_one_line_at_once(tmp_path, url, shown):
    """TensorFlow retries such a request for minutes (or raises InvalidArgumentError): the name is
    checked first, so the command fails before any request."""
    from helpers import runner
    from tlcli.cli import app

    for arguments in (["inspect", url], ["train", str(tmp_path), "--out", f"{url}/run"]):
        result = runner.invoke(app, arguments, terminal_width=400)
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and shown in lines[0], result.output
