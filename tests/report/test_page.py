"""The report page in a real browser (headless Chromium, the network off): it renders without
errors, shows what `evaluate --json` says, reads on a phone, runs nothing a class name holds, and
asks for nothing beyond its own file."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from helpers import invoke, relabelled_run

WIDTH, HEIGHT = 1280, 900
PHONE = 390  # CSS pixels: a phone's width
HOSTILE = ("<img src=x onerror=alert(1)>", "\"><svg onload=alert(2)>")  # as class names


@pytest.fixture(scope="module")
def page(browser, evaluated):
    """evaluate's report.html, loaded: (the browser, what the load recorded, evaluate's JSON, the folder)."""
    folder, report, _ = evaluated
    browser.viewport(WIDTH, HEIGHT)
    return browser, browser.load(folder / "report.html"), report, folder


def _texts(browser, selector: str) -> list[str]:
    return browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), element => element.textContent.trim())", selector)


def test_it_renders_without_console_errors_and_asks_for_nothing_but_itself(page):
    _, loaded, _, _ = page
    assert loaded.errors() == []
    assert loaded.requests and loaded.outside() == [], "every request is the page's own file or a data: picture"


def test_a_screenshot_has_the_viewports_size_and_shows_the_page(page):
    browser, _, _, _ = page
    with Image.open(io.BytesIO(browser.screenshot())) as shot:
        assert shot.size == (WIDTH, HEIGHT)
        pixels = shot.convert("RGB")
        colours = pixels.getcolors(maxcolors=WIDTH * HEIGHT)
    inked = sum(count for count, colour in colours if colour != (255, 255, 255))
    assert len(colours) > 50 and inked > 0.02 * WIDTH * HEIGHT, "text, tables and lines, not a blank page"


def test_the_metrics_are_the_numbers_evaluate_json_reports(page):
    browser, _, report, _ = page
    cells = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('#quality td[data-metric]'),"
        " cell => [cell.dataset.metric, cell.dataset.value, cell.textContent.trim()])")
    shown = {key: (float(value), text) for key, value, text in cells}
    scores = {key: value for key, value in report.items() if isinstance(value, (int, float))
              and not isinstance(value, bool) and key not in ("top_k", "zero_division")}
    assert set(shown) == set(scores) and {"accuracy", "f1_macro", "log_loss", "ece", "samples"} <= set(shown)
    for key, value in scores.items():
        assert shown[key][0] == value, key
        assert shown[key][1] == (str(value) if isinstance(value, int) else f"{value:.4f}"), key


def test_the_confusion_matrix_holds_evaluates_counts_in_readable_text(page):
    browser, _, report, _ = page
    rows = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('table.matrix tbody tr'), row =>"
        " [row.querySelector('th').textContent, Array.from(row.querySelectorAll('td.count'), cell => cell.textContent)])")
    assert [name for name, _ in rows] == report["classes"]
    assert [[int(count) for count in counts] for _, counts in rows] == report["confusion_matrix"]


def test_one_thumbnail_per_misclassified_image_worst_first(page):
    browser, _, report, folder = page
    with open(folder / "misclassified.csv", newline="") as handle:
        mistakes = sorted(csv.DictReader(handle), key=lambda row: float(row["true_probability"]))
    assert mistakes and len(mistakes) == report["misclassified"], "the tiny run makes mistakes to show"
    thumbnails = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('#failures figure.tile'), tile => [tile.querySelector("
        "'img.thumbnail') ? tile.querySelector('img.thumbnail').src.slice(0, 23) : null,"
        " tile.querySelector('figcaption span').textContent])")
    assert [source for source, _ in thumbnails] == ["data:image/jpeg;base64,"] * len(mistakes)
    assert [name for _, name in thumbnails] == [Path(row["path"]).name for row in mistakes]
    loaded = browser.driver.execute_script(  # decoded by the browser, at most a thumbnail's size
        "const images = Array.from(document.querySelectorAll('#failures img.thumbnail'));"
        "images.forEach(image => image.loading = 'eager');"
        "return Promise.all(images.map(image => image.decode().then(() => [image.naturalWidth, image.naturalHeight])))")
    assert all(0 < max(size) <= 96 for size in loaded)


def test_the_table_of_contents_leads_to_every_part(page):
    browser, _, report, _ = page
    targets = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('nav.contents a'), link =>"
        " [link.getAttribute('href'), !!document.getElementById(link.getAttribute('href').slice(1))])")
    assert {"#run", "#learning", "#quality", "#failures", "#calibration"} <= {href for href, _ in targets}
    assert all(found for _, found in targets)
    assert report["data_description"][1:] in " ".join(_texts(browser, "nav.contents a"))


def test_the_browsers_find_meets_the_numbers_and_names_as_text(page):
    browser, _, report, _ = page
    for text in (f"{report['accuracy']:.4f}", report["classes"][0], "Where it fails"):
        assert browser.driver.execute_script("window.getSelection().removeAllRanges(); return window.find(arguments[0])",
                                             text), text


def test_it_reads_on_a_phone_without_scrolling_sideways(page):
    browser, _, _, folder = page
    browser.viewport(PHONE, 844, mobile=True)
    try:
        browser.load(folder / "report.html")
        width = browser.driver.execute_script("return document.documentElement.scrollWidth")
        layout = browser.driver.execute_script(
            "const nav = document.querySelector('nav.contents').getBoundingClientRect();"
            "const main = document.querySelector('main').getBoundingClientRect();"
            "return [nav.width, main.width, main.top >= nav.bottom]")
    finally:
        browser.viewport(WIDTH, HEIGHT)
    assert width <= PHONE, "wide tables scroll inside their own box, the page does not"
    assert layout[0] <= PHONE and layout[1] <= PHONE and layout[2], "the contents come first, above the text"


@pytest.fixture(scope="module")
def hostile(tiny_run, colour_dataset, tmp_path_factory) -> Path:
    """An evaluation of the tiny run under class names that are HTML: its report.html."""
    root = tmp_path_factory.mktemp("hostile")
    names = ("blue", *HOSTILE)  # the run's label order: blue, green, red
    run = relabelled_run(tiny_run, root / "run", names)
    for colour, name in zip(("blue", "green", "red"), names):
        shutil.copytree(colour_dataset / "test" / colour, root / "data" / name)
    invoke("evaluate", run, root / "data", "--out", root / "evaluation")
    return root / "evaluation" / "report.html"


def test_a_class_named_as_html_is_shown_as_text_and_runs_nothing(browser, hostile):
    browser.viewport(WIDTH, HEIGHT)
    loaded = browser.load(hostile)
    assert browser.alert_text() is None
    assert loaded.errors() == [] and loaded.outside() == []
    assert browser.driver.execute_script("return document.querySelectorAll('img[src=\"x\"], svg').length") == 0
    per_class = _texts(browser, "table.per-class tbody th")
    matrix = _texts(browser, "table.matrix tbody th")
    for name in HOSTILE:
        assert name in per_class and name in matrix
