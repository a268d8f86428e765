"""`tlcli report` and the page `tlcli evaluate` writes, read without a browser: where the page
goes, what bad input gets, and that each part says what the files it comes from say."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, invoke, runner
from tlcli.cli import app
from tlcli.runs.atomic import signed_by_tlcli


class Elements(HTMLParser):
    """A page's elements as (tag, attributes, text inside), in document order, read without a browser."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict, list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), []))
        if tag not in ("img", "meta", "br", "link", "input"):
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag):
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data):
        for index in self._open:
            self.elements[index][2].append(data)

    def find(self, tag: str, class_name: str) -> list[tuple[dict, str]]:
        """(attributes, text) of each `tag` of the class `class_name`."""
        return [(attributes, "".join(text)) for name, attributes, text in self.elements
                if name == tag and class_name in (attributes.get("class") or "").split()]

    def cells(self, table_class: str) -> list[str]:
        """The text of each cell (td or th) of the first table of the class `table_class`."""
        tables = [index for index, (tag, _, _) in enumerate(self.elements) if tag == "table"]
        start = next(index for index in tables if table_class in (self.elements[index][1].get("class") or "").split())
        end = next((index for index in tables if index > start), len(self.elements))
        return ["".join(text).strip() for tag, _, text in self.elements[start:end] if tag in ("td", "th")]


def _report(*args):
    return runner.invoke(app, ["report", *map(str, args)], terminal_width=400)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
            for path in sorted(folder.rglob("*"))}


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _metric_cells(page: Path) -> dict[str, tuple[str, str]]:
    return {attributes["data-metric"]: (attributes["data-value"], "".join(text).strip())
            for tag, attributes, text in Elements(page.read_text()).elements if tag == "td" and "data-metric" in attributes}


def test_the_run_gets_its_own_page_by_default_refreshed_each_time(tiny_run, evaluated, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    folder, _, _ = evaluated
    for _ in range(2):  # the default page is tlcli's own: written again without --overwrite
        result = _report(run, "--evaluation", folder)
        assert result.exit_code == 0, result.output
    page = run / "report.html"
    assert f"Reportwrittento{page}" in "".join(result.output.split())  # the line may wrap inside the path
    assert signed_by_tlcli(page) and "report.html" in json.loads((run / ".tlcli").read_text())["files"]


def test_the_page_shows_the_evaluations_numbers_as_evaluate_wrote_them(tiny_run, evaluated, tmp_path):
    folder, report, _ = evaluated
    result = _report(tiny_run, "--evaluation", folder, "--out", tmp_path / "page.html", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["evaluations"] == 1
    shown, written_by_evaluate = _metric_cells(tmp_path / "page.html"), _metric_cells(folder / "report.html")
    assert shown == written_by_evaluate and float(shown["accuracy"][0]) == report["accuracy"]


def test_evaluate_writes_the_page_beside_its_reports_and_says_where_unless_told_not_to(evaluated, tiny_run,
                                                                                     colour_dataset, tmp_path):
    folder, report, told = evaluated
    assert f"Open {folder / 'report.html'} in a browser" in " ".join(told.split())
    assert signed_by_tlcli(folder / "report.html")
    run = shutil.copytree(tiny_run, tmp_path / "run")  # its reports go into the run itself, without --out
    result = runner.invoke(app, ["evaluate", str(run), str(colour_dataset), "--no-report"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert (run / "evaluation.json").is_file() and not (run / "report.html").exists()
    assert "report.html" not in result.output


@pytest.mark.parametrize("case", ["not a run", "an evaluation without evaluation.json", "an audit without audit.json",
                                  "explanations without explain.json"])
def test_bad_input_is_one_line_and_writes_nothing(tiny_run, tmp_path, case):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    arguments = {"not a run": (other,), "an evaluation without evaluation.json": (run, "--evaluation", other),
                 "an audit without audit.json": (run, "--audit", other),
                 "explanations without explain.json": (run, "--explanations", other)}[case]
    before = _snapshot(tmp_path)
    message = _one_line_error(_report(*arguments))
    assert str(other) in message
    assert _snapshot(tmp_path) == before


def test_a_folder_tlcli_did_not_make_gets_no_page_without_out(tiny_run, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(tiny_run / "model.keras", folder / "model.keras")
    shutil.copy(tiny_run / "labels.txt", folder / "labels.txt")
    assert "--out" in _one_line_error(_report(folder))
    assert sorted(path.name for path in folder.iterdir()) == ["labels.txt", "model.keras"]
    assert _report(folder, "--out", tmp_path / "page.html").exit_code == 0


def test_a_solved_heads_penalty_path_shows_its_chosen_penalty(solved_run, tmp_path):
    assert _report(solved_run, "--out", tmp_path / "page.html").exit_code == 0
    solver = json.loads((solved_run / "metrics.json").read_text())["solver"]
    chosen = Elements((tmp_path / "page.html").read_text()).find("tr", "chosen")
    assert len(chosen) == 1 and chosen[0][1].startswith(f"{solver['penalty_C']:.3g}")
    assert len(Elements((tmp_path / "page.html").read_text()).cells("penalty")) == 4 * (1 + len(solver["path"]))


def test_a_fine_tuning_shows_each_stages_rate_and_where_it_came_from(finetuned_run, tmp_path):
    run, _ = finetuned_run
    assert _report(run, "--out", tmp_path / "page.html").exit_code == 0
    rates = json.loads((run / "metrics.json").read_text())["stage_rates"]
    cells = Elements((tmp_path / "page.html").read_text()).cells("stages")
    for stage, entry in rates.items():
        row = cells.index(stage)
        assert cells[row + 1:row + 3] == [f"{entry['learning_rate']:.3g}", entry["source"]]
    assert "Training curves" in (tmp_path / "page.html").read_text()


def test_calibration_shows_the_scores_before_and_after_as_calibrate_reported_them(calibrated_run, tmp_path):
    run, _, calibrated = calibrated_run
    assert _report(run, "--out", tmp_path / "page.html").exit_code == 0
    cells = Elements((tmp_path / "page.html").read_text()).cells("calibration")
    for score in ("ece", "brier", "log_loss"):
        row = cells.index(score)
        assert cells[row + 1:row + 3] == [f"{calibrated['before'][score]:.4f}", f"{calibrated['after'][score]:.4f}"]


def test_the_audits_suspects_and_duplicate_groups_each_have_their_images(colour_dataset, tiny_run, tmp_path):
    data = shutil.copytree(colour_dataset, tmp_path / "data")
    shutil.copy(data / "train" / "red" / "red_3.png", data / "test" / "red" / "leaked.png")  # a leak across splits
    shutil.move(data / "train" / "blue" / "blue_5.png", data / "train" / "green" / "blue_5.png")  # a wrong label
    invoke("audit", data, *TINY_TRAIN, "--out", tmp_path / "audit")
    document = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert _report(tiny_run, "--audit", tmp_path / "audit", "--out", tmp_path / "page.html").exit_code == 0
    page = Elements((tmp_path / "page.html").read_text())
    suspects = [text for _, text in page.find("figure", "tile") if "suggested" in text]
    assert len(suspects) == len(document["label_errors"]["rows"])
    groups = [text for _, text in page.find("div", "group")]
    assert len(groups) == document["duplicates"]["groups"] >= 1
    leaking = [text for attributes, text in page.find("div", "leakage")]
    assert any("leaked.png" in text and "red_3.png" in text and "LEAKAGE" in text for text in leaking)
    thumbnails = [attributes for attributes, _ in page.find("img", "thumbnail")]
    images = len(suspects) + sum(len(group["images"]) for group in document["duplicates"]["rows"]) + \
        sum(row["flagged"] for row in document["outliers"]["rows"])
    assert len(thumbnails) == images and all(attributes["src"].startswith("data:image/jpeg") for attributes in thumbnails)


def test_an_explained_mistake_shows_its_map_beside_it(tiny_run, evaluated, tmp_path):
    folder, _, _ = evaluated
    with open(folder / "misclassified.csv", newline="") as handle:
        mistake = next(csv.DictReader(handle))["path"]
    invoke("explain", tiny_run, mistake, "--out", tmp_path / "maps")
    assert _report(tiny_run, "--evaluation", folder, "--explanations", tmp_path / "maps",
                   "--out", tmp_path / "page.html").exit_code == 0
    tiles = Elements((tmp_path / "page.html").read_text()).elements
    maps = [index for index, (tag, attributes, _) in enumerate(tiles) if tag == "img" and attributes.get("class") == "map"]
    assert len(maps) == 1
    tile = max(index for index, (tag, _, _) in enumerate(tiles[:maps[0]]) if tag == "figure")
    assert Path(mistake).name in "".join(tiles[tile][2])


def test_the_options_not_at_their_default_are_listed_beside_their_default(tiny_run, tmp_path):
    assert _report(tiny_run, "--out", tmp_path / "page.html").exit_code == 0
    cells = Elements((tmp_path / "page.html").read_text()).cells("options")
    rows = {tuple(cells[start:start + 3]) for start in range(3, len(cells), 3)}  # after the header
    # The tiny_run fixture's settings (tests/conftest.py) away from TrainConfig's and FitConfig's defaults.
    assert rows == {("--head-solver", "gradient", "auto"), ("--epochs", "2", "none"), ("--batch-size", "8", "32")}
