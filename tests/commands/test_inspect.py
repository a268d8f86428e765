"""`tlcli inspect`: a dataset's classes, counts and problems, as tables and as JSON."""

from __future__ import annotations

import json
import os
import warnings

from helpers import runner
from tlcli.cli import app
from tlcli.console import out


def test_inspect_json_reports_the_messy_folder(messy_dataset):
    result = runner.invoke(app, ["inspect", str(messy_dataset), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["classes"] == ["cat", "dog"]
    assert report["counts"]["train"] == {"cat": 11, "dog": 4}
    assert {p["path"].rsplit("/", 1)[1] for p in report["problems"]} == {
        "corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"}
    assert {"CMYK", "RGBA", "L", "I;16", "P"} <= set(report["modes"])
    assert report["clean"] is False


def test_inspect_strict_exits_non_zero_only_when_problems_exist(messy_dataset, split_dataset):
    assert runner.invoke(app, ["inspect", str(messy_dataset), "--strict"]).exit_code == 1
    clean = runner.invoke(app, ["inspect", str(split_dataset), "--strict"])
    assert clean.exit_code == 0 and "No problems found" in clean.stdout


def test_inspect_reports_huge_images_without_pillows_raw_warning(flat_dataset, monkeypatch):
    from PIL import Image

    Image.new("1", (10000, 10000)).save(flat_dataset / "cat" / "huge.png")
    monkeypatch.setattr(out, "_width", 400)  # no line of the report wraps (Rich's own width, restored after)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")  # every warning Pillow raises is recorded, none hidden
        table = runner.invoke(app, ["inspect", str(flat_dataset)])
    assert table.exit_code == 0
    assert not [warning for warning in raised if "DecompressionBomb" in warning.category.__name__]
    assert "DecompressionBomb" not in table.output
    assert f"Huge images: 1 over 89.5 megapixels, the largest {flat_dataset / 'cat' / 'huge.png'} (10000x10000)." in (
        table.stdout)
    report = json.loads(runner.invoke(app, ["inspect", str(flat_dataset), "--json"]).stdout)
    assert report["huge_images"]["count"] == 1 and report["huge_images"]["largest"]["width"] == 10000


def test_inspect_prints_names_literally_not_as_markup(flat_dataset, monkeypatch):
    (flat_dataset / "cat" / "[bold]notes.txt").write_text("not an image")
    os.symlink("..", flat_dataset / "dog" / "[red]up")
    (flat_dataset / "[blue]bird").mkdir()
    monkeypatch.setattr(out, "_width", 400)  # no line of the report wraps (Rich's own width, restored after)
    table = runner.invoke(app, ["inspect", str(flat_dataset)])
    assert table.exit_code == 0
    for name in ("[bold]notes.txt", "[red]up", "[blue]bird"):
        assert name in table.stdout


def test_out_of_range_split_is_a_one_line_error(flat_dataset):
    result = runner.invoke(app, ["inspect", str(flat_dataset), "--val-split", "1.5"])
    assert result.exit_code == 2 and "--val-split 1.5 is out of range" in result.output


def test_many_problems_of_one_kind_are_summarised_not_listed(colour_dataset, tmp_path):
    """A label file of 100,000 rows naming 20 missing files once printed 199,977 lines."""
    labels = tmp_path / "big.csv"
    labels.write_text("path,label\n" + "".join(f"missing/{row % 20}.png,{'red' if row % 2 else 'blue'}\n"
                                               for row in range(5000)))
    result = runner.invoke(app, ["inspect", str(colour_dataset), "--labels", str(labels)], terminal_width=200)
    assert "5000 file(s) that will be skipped" in result.output
    assert "row N of big.csv names a file that does not exist" in result.output and "│ 5000 " in result.output
    assert len(result.output.splitlines()) < 40
    listed = json.loads(runner.invoke(app, ["inspect", str(colour_dataset), "--labels", str(labels), "--json"]).output)
    assert len(listed["problems"]) == 5000
