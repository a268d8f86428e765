"""`tlcli.storage`: URLs as tlcli's paths, and their failures as one line."""

from __future__ import annotations

import uuid
from pathlib import Path, PurePosixPath

import pytest

from tlcli.errors import TlcliError
from tlcli.storage import Url, atomic_url_file, check_readable, location


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
