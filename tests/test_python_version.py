"""The Python that pyproject.toml declares is the Python the code needs: vermin reads every module
of the package and the tests and names the oldest version that runs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERMIN = shutil.which("vermin")  # a script of the dev extra


def declared_minimum() -> tuple[int, int]:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires.strip()).groups()
    return int(major), int(minor)


def test_the_declared_minimum_python_is_the_one_the_code_needs():
    result = subprocess.run([VERMIN, "--no-tips", "--violations", "--no-parse-comments",
                             "-t=%d.%d-" % declared_minimum(), "tlcli", "tests"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, f"code that needs a newer Python than pyproject.toml declares:\n{result.stdout}"
    needed = subprocess.run([VERMIN, "--no-tips", "tlcli"], cwd=ROOT, capture_output=True,
                            text=True).stdout
    minimum = re.search(r"Minimum required versions: ([\d.]+)", needed).group(1)
    assert tuple(map(int, minimum.split("."))) == declared_minimum(), "pyproject.toml may declare an older Python"
