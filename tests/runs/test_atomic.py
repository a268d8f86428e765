"""tlcli.runs.atomic: files and folders that appear whole, and tlcli's signature in its files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from helpers import png_bytes
from PIL import Image

from tlcli.runs.atomic import (
    OLD,
    PARTIAL,
    leftovers,
    sibling,
    sign_png,
    signed_by_tlcli,
    signed_csv,
    signed_html,
    swap_into_place,
    tidy_leftovers,
    write_atomic,
)


def test_a_signed_png_is_the_same_image_and_says_tlcli_wrote_it(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(sign_png(png_bytes()))
    with Image.open(path) as image:
        assert image.text["Software"].startswith("tlcli ")
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(png_bytes()))))
    assert signed_by_tlcli(path)


def test_write_atomic_signs_every_png_it_writes(tmp_path):
    write_atomic(tmp_path / "a.png", png_bytes())
    write_atomic(tmp_path / "b.txt", "text")
    assert signed_by_tlcli(tmp_path / "a.png") and (tmp_path / "b.txt").read_text() == "text"


@pytest.mark.parametrize("content", [
    pytest.param(png_bytes(), id="a PNG of someone else's"),
    pytest.param(b"tlcli 0.1.0 but not an image", id="text that starts like the signature"),
    pytest.param(b"", id="an empty file"),
])
def test_other_files_are_not_tlclis(tmp_path, content):
    path = tmp_path / "file.png"
    path.write_bytes(content)
    assert not signed_by_tlcli(path)
    assert not signed_by_tlcli(tmp_path / "missing.png")


def test_an_npz_is_tlclis_only_with_the_archive_comment(tmp_path):
    from tlcli.runs.atomic import npz_comment

    np.savez(tmp_path / "plain.npz", x=np.arange(3))
    assert not signed_by_tlcli(tmp_path / "plain.npz")
    with zipfile.ZipFile(tmp_path / "plain.npz", "a") as archive:
        archive.comment = npz_comment()
    assert signed_by_tlcli(tmp_path / "plain.npz")
    assert np.load(tmp_path / "plain.npz")["x"].tolist() == [0, 1, 2]  # numpy ignores the comment


def test_a_csv_is_tlclis_only_while_its_rows_are_those_it_signed(tmp_path):
    import csv

    path = tmp_path / "labels.csv"
    path.write_text(signed_csv(("path", "label"), [("a.png", "cat"), ("b, c.png", "dog")]))
    assert signed_by_tlcli(path)
    with open(path, newline="") as handle:  # any CSV reader sees the columns, and one more, empty
        rows = list(csv.DictReader(handle))
    assert [(row["path"], row["label"]) for row in rows] == [("a.png", "cat"), ("b, c.png", "dog")]
    assert list(rows[0])[-1].startswith("tlcli ") and rows[0][list(rows[0])[-1]] == ""

    path.write_text(path.read_text().replace("cat", "lion"))  # a user's correction
    assert not signed_by_tlcli(path)
    path.write_text("path,label,tlcli 0.1.0 sha256=" + "0" * 64 + "\na.png,cat,\n")  # a copied header
    assert not signed_by_tlcli(path)


def test_an_html_page_is_tlclis_only_while_it_is_the_page_it_signed(tmp_path):
    path = tmp_path / "report.html"
    page = "<!DOCTYPE html>\n<html lang=\"en\"><title>Run ✓</title><p>accuracy 0.9</p></html>\n"
    path.write_bytes(signed_html(page).encode())
    assert signed_by_tlcli(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "<!DOCTYPE html>" and lines[1].startswith("<!-- tlcli ") and lines[2:] == page.splitlines()[1:]

    path.write_text(path.read_text().replace("0.9", "0.99"))  # someone's edit
    assert not signed_by_tlcli(path)
    path.write_text(page)  # a page of someone else's
    assert not signed_by_tlcli(path)


def test_a_folder_is_swapped_in_whole(tmp_path):
    target, built = tmp_path / "out", tmp_path / "built"
    (target / "old").mkdir(parents=True)
    (target / "old" / "a.txt").write_text("old")
    built.mkdir()
    (built / "b.txt").write_text("new")
    swap_into_place(built, target)
    assert sorted(path.name for path in target.iterdir()) == ["b.txt"] and not built.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_a_killed_command_are_tidied(tmp_path):
    target = tmp_path / "out"
    half_built = sibling(target, PARTIAL)
    half_built.mkdir()
    (half_built / "big.bin").write_bytes(b"x" * 1000)
    old = sibling(target, OLD)  # killed between the two renames of a swap without renameat2
    old.mkdir()
    (old / "model.keras").write_text("the old output")
    tidy_leftovers(target)
    assert (target / "model.keras").read_text() == "the old output"
    assert leftovers(target, PARTIAL) == [] and leftovers(target, OLD) == []
