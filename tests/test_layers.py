"""The package's one-way layers (pyproject.toml's import-linter contracts) hold, and they can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def test_every_package_imports_only_the_layers_below_it():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "tlcli", copy / "tlcli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    runtime = copy / "tlcli" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\n\ndef _planted():\n    from tlcli.training import train  # noqa\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "tlcli.runtime -> tlcli.training.train" in result.stdout
