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


def _copy_project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "tlcli", copy / "tlcli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _plant(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n\ndef _planted():\n    {statement}  # noqa\n")


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = _copy_project(tmp_path)
    runtime = copy / "tlcli" / "runtime.py"
    _plant(runtime, "from tlcli.training import train")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "tlcli.runtime -> tlcli.training.train" in result.stdout


def test_a_library_module_that_imports_the_console_breaks_the_contract(tmp_path):
    """training sits above console.py, so the layers allow this import; the console contract does not."""
    copy = _copy_project(tmp_path)
    _plant(copy / "tlcli" / "training" / "fit.py", "from tlcli.console import out")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "tlcli's packages import downwards only KEPT" in result.stdout
    assert "only the command layer imports tlcli.console BROKEN" in result.stdout
    assert "tlcli.training.fit -> tlcli.console" in result.stdout
