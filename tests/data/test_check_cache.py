"""Checking each file once: a second scan of unchanged data decodes nothing, a changed file is
checked again, and the cache never costs the user a file or an error."""

from __future__ import annotations

import json
import os
import time

import pytest

from helpers import invoke, write_class_folders
from tlcli.data import images
from tlcli.data.check_cache import cache_path
from tlcli.data.dataset import scan
from tlcli.data.images import ImageInfo, Problem


def _age(root, seconds=3600):
    """Date every file an hour back: files written this instant are not cached yet (their
    modification time could still change unseen)."""
    then = time.time_ns() - int(seconds * 1e9)
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(then, then))


@pytest.fixture
def aged_dataset(messy_dataset):
    _age(messy_dataset)
    return messy_dataset


@pytest.fixture
def opened(monkeypatch):
    """The files Pillow checks, in order (the real check runs)."""
    seen = []
    check = images.check_image

    def counting(path):
        seen.append(path.name)
        return check(path)

    monkeypatch.setattr(images, "check_image", counting)
    return seen


def _results(found):
    return {str(path): result for path, result in found.checked.items()}


def test_a_second_scan_of_unchanged_data_checks_no_file(aged_dataset, opened):
    first = scan(aged_dataset)
    assert len(opened) == len(first.checked) > 15
    opened.clear()
    second = scan(aged_dataset)
    assert opened == []
    # The same results, problems with their reasons included.
    assert _results(second) == {str(path): _rebased(result, path) for path, result in first.checked.items()}
    assert second.problems == first.problems
    assert cache_path(aged_dataset).is_file()
    assert not [path for path in aged_dataset.rglob("*") if "tlcli" in path.name]  # nothing written into DATA


def _rebased(result, path):
    return Problem(path, result.reason) if isinstance(result, Problem) else result


def test_inspect_reports_every_problem_as_before_from_the_cache(aged_dataset):
    first = json.loads(invoke("inspect", aged_dataset, "--json").output)
    second = json.loads(invoke("inspect", aged_dataset, "--json").output)
    assert second == first
    assert {problem["path"].rsplit("/", 1)[-1] for problem in second["problems"]} == {
        "corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"}


def test_only_files_whose_size_or_time_changed_are_checked_again(aged_dataset, opened):
    scan(aged_dataset)
    cats = aged_dataset / "train" / "cat"
    # Garbage of the same size, its modification time put back: indistinguishable by size and
    # time, so the cached result stands (this is what the cache trusts, and all it trusts).
    disguised = cats / "cat_0.png"
    status = disguised.stat()
    disguised.write_bytes(b"x" * status.st_size)
    os.utime(disguised, ns=(status.st_atime_ns, status.st_mtime_ns))
    # The same garbage, touched: checked again and found out.
    touched = cats / "cat_1.png"
    touched.write_bytes(b"x" * touched.stat().st_size)
    a_minute_ago = time.time_ns() - int(60e9)  # newer than the cache, older than the racy window
    os.utime(touched, ns=(a_minute_ago, a_minute_ago))
    (cats / "cat_2.png").unlink()
    opened.clear()

    found = scan(aged_dataset)
    assert opened == ["cat_1.png"]
    assert isinstance(found.checked[disguised], ImageInfo)
    assert "not a readable image" in found.checked[touched].reason
    entries = json.loads(cache_path(aged_dataset).read_text())["files"]
    assert "train/cat/cat_2.png" not in entries and "train/cat/cat_1.png" in entries


def test_files_modified_this_instant_are_checked_until_they_are_older(tmp_path, opened):
    root = write_class_folders(tmp_path / "fresh", {"a": 2, "b": 2})
    scan(root)
    scan(root)
    assert len(opened) == 8  # a same-size rewrite within the file system's clock tick would go unseen
    _age(root)
    scan(root)
    opened.clear()
    scan(root)
    assert opened == []


def test_read_only_data_keeps_its_checks_in_the_user_cache_directory(aged_dataset, tmp_path, monkeypatch, opened,
                                                                      make_read_only):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_read_only(aged_dataset)
    scan(aged_dataset)
    assert cache_path(aged_dataset).parent == tmp_path / "cache" / "tlcli" / "checks"
    assert cache_path(aged_dataset).is_file()
    opened.clear()
    scan(aged_dataset)
    assert opened == []


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format":"tlcli-checks","version":1,"files":{"a":[1',
                                     b'{"format":"tlcli-checks","version":1,"files":{"train/cat/cat_0.png":[1,2,"image"]}}',
                                     b'{"format":"tlcli-checks","version":99,"files":[]}'])
def test_a_damaged_cache_is_ignored_and_a_file_that_is_not_tlclis_is_never_replaced(aged_dataset, content):
    cache = cache_path(aged_dataset)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(content)
    found = scan(aged_dataset)
    assert len(found.problems) == 4
    if content.startswith(b'{"format":"tlcli-checks"'):  # tlcli's own, damaged: written again
        assert json.loads(cache.read_text())["format"] == "tlcli-checks"
    else:  # not tlcli's: left as it was
        assert cache.read_bytes() == content
    assert len(scan(aged_dataset).problems) == 4
