"""The package's one-way layers (pyproject.toml's import-linter contracts) hold, they name every
module, and they can fail; each command reaches the library through one workflow module; no
function runs past a screen."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
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


def _modules(folder: Path) -> set[str]:
    return ({path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
            | {path.name for path in folder.iterdir() if (path / "__init__.py").is_file()})


def _named(contract: dict) -> set[str]:
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_the_contracts_name_every_module():
    """A module no contract names may import anything: the top contract names every top-level
    module, each package's contract every module in it, and the console contract every
    library package."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    top = next(contract for contract in contracts if contract["type"] == "layers" and "containers" not in contract)
    assert _named(top) == {f"tlcli.{name}" for name in _modules(ROOT / "tlcli")}
    inner = {contract["containers"][0]: _named(contract) for contract in contracts if "containers" in contract}
    packages = [path for path in (ROOT / "tlcli").iterdir() if (path / "__init__.py").is_file()]
    assert inner == {f"tlcli.{package.name}": _modules(package) for package in packages}
    console = next(contract for contract in contracts if contract["type"] == "forbidden")
    assert console["forbidden_modules"] == ["tlcli.console"]
    command_layer = {"tlcli.__main__", "tlcli.cli", "tlcli.commands", "tlcli.console"}
    assert set(console["source_modules"]) == _named(top) - command_layer


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


# The floors every layer may use: the terminal (commands only), paths and URLs, errors. Any other
# library module a command imports is a workflow module, or a part of one.
_NOT_WORKFLOWS = {"tlcli.console", "tlcli.storage", "tlcli.errors"}


def _imported_modules(path: Path) -> set[str]:
    """Every tlcli module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "tlcli":
            found |= {f"tlcli.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tlcli."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tlcli.")}
    return found


def test_each_command_imports_one_workflow_module_of_the_library():
    """A command parses its options, makes one library call and draws the result: its options'
    shared declarations and its drawing live in commands/, the work in one workflow module."""
    commands = sorted((ROOT / "tlcli" / "commands").glob("[a-z]*.py"))
    workflows = {path.stem: {module for module in _imported_modules(path)
                             if not module.startswith("tlcli.commands") and module not in _NOT_WORKFLOWS}
                 for path in commands}
    assert len(workflows) >= 16
    assert {command: modules for command, modules in workflows.items() if len(modules) != 1} == {}


def test_no_function_is_longer_than_sixty_lines():
    long = {f"{path.relative_to(ROOT)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
            for path in sorted((ROOT / "tlcli").rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60}
    assert long == {}
