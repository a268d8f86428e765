"""The report's fixtures: an evaluation of the tiny run to report on, and a headless Chromium per
test module."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from browser import headless_chromium, missing
from helpers import invoke


MISFILED = (("red", "red_0.png", "green"), ("green", "green_1.png", "blue"), ("blue", "blue_2.png", "red"))


@pytest.fixture(scope="package")
def evaluated(tiny_run, colour_dataset, tmp_path_factory) -> tuple[Path, dict, str]:
    """`tlcli evaluate --json --out` of the tiny run on the colour test split with three images
    filed under another colour (MISFILED), so that there are mistakes to show: (the evaluation
    folder, with the report.html evaluate wrote, evaluate's JSON, and what it told on stderr)."""
    root = tmp_path_factory.mktemp("reported")
    data = shutil.copytree(colour_dataset / "test", root / "data" / "test")
    for colour, name, filed_as in MISFILED:
        shutil.move(data / colour / name, data / filed_as / name)
    result = invoke("evaluate", tiny_run, root / "data", "--json", "--out", root / "evaluation")
    return root / "evaluation", json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module. Where it is not installed the tests are skipped,
    except on CI, which installs it (scripts/install-dev), where that is a failure."""
    reason = missing()
    if reason:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no headless Chromium: {reason}")
    with headless_chromium() as started:
        yield started
