"""The documentation as a reader meets it: the generated reference says what the code does, every
file of the repository a page names exists, and the README stays short with links that lead
somewhere. (`mkdocs build --strict` in .ci/run checks the links between the pages of docs/.)"""

from __future__ import annotations

import importlib.util
import re
import shlex

import pytest

from helpers import SOURCE_TREE

README = SOURCE_TREE / "README.md"
PAGES = sorted((SOURCE_TREE / "docs").rglob("*.md"))


def _make_reference():
    spec = importlib.util.spec_from_file_location("make_reference", SOURCE_TREE / "scripts" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_reference = _make_reference()


@pytest.mark.parametrize("path", list(make_reference.PAGES), ids=lambda path: path.name)
def test_the_generated_pages_say_what_the_code_does(path):
    """Regenerated in memory from the Typer app, the backbone table and the contracts: equal to the committed page."""
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    assert committed == make_reference.PAGES[path](), (
        f"{path.relative_to(SOURCE_TREE)} is stale: run python scripts/make_reference.py and commit the result.")


def test_the_reference_script_names_a_stale_page(tmp_path, monkeypatch):
    page = tmp_path / "cli.md"
    page.write_text("an old page\n")
    monkeypatch.setattr(make_reference, "PAGES", {page: make_reference.cli_page})
    assert make_reference.stale_pages() == [page]
    page.write_text(make_reference.cli_page())
    assert make_reference.stale_pages() == []


def test_the_reference_shows_every_command_and_every_backbone():
    from tlcli.cli import app
    from tlcli.models.backbones import MODEL_NAMES

    cli, backbones = make_reference.cli_page(), make_reference.backbones_page()
    assert all(f"## `tlcli {command.name}`" in cli for command in app.registered_commands)
    assert all(f"| `{name}`" in backbones for name in MODEL_NAMES)


# A path of the repository as the pages write it: tests/export/test_export.py, bench/audit.py, ...
REPOSITORY_PATH = re.compile(r"\b(?:tests|bench|scripts|tlcli|docs|sample_data)/[\w./-]*\w\.(?:py|md|toml|json|png|csv)\b")


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda path: str(path.relative_to(SOURCE_TREE)))
def test_every_file_a_page_names_exists(page):
    named = set(REPOSITORY_PATH.findall(page.read_text(encoding="utf-8")))
    missing = sorted(path for path in named if not (SOURCE_TREE / path).exists())
    assert not missing, f"{page.relative_to(SOURCE_TREE)} names files that do not exist: {', '.join(missing)}"


def test_the_readme_is_short_and_its_links_lead_to_files():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in link]
    missing = [link for link in links if not (SOURCE_TREE / link).exists()]
    assert links and not missing, f"README.md links to files that do not exist: {missing}"


def test_the_setup_trains_what_the_tour_shows():
    """The README's set-up command and its tour's train step are the same run."""
    text = README.read_text(encoding="utf-8")
    (setup,) = re.findall(r"^python -m pip install -e \. && (tlcli train .*)$", text, re.MULTILINE)
    tour = re.findall(r"^\$ (tlcli .*)$", text, re.MULTILINE)
    assert shlex.split(setup) in [shlex.split(command) for command in tour]


def _package_map() -> list[tuple[list[str], str]]:
    """The rows of Development's table of the packages: the folders and modules each names, and what it says they hold."""
    page = (SOURCE_TREE / "docs" / "development" / "index.md").read_text(encoding="utf-8")
    table = page.split("## The packages", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ", 1) for line in table.splitlines() if line.startswith("| `")]
    return [(re.findall(r"`([\w.]+/?)`", names), holds) for names, holds in rows]


def test_the_development_map_names_every_package_and_module_of_the_tree():
    """A reader looking for a module finds it in the row of its package, and the map names nothing that is gone."""
    from tlcli.cli import app

    package = SOURCE_TREE / "tlcli"
    tree = {path.name + "/" for path in package.iterdir() if (path / "__init__.py").is_file()}
    tree |= {path.name for path in package.glob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    rows = _package_map()
    assert sorted(name for names, _ in rows for name in names) == sorted(tree)
    commands = {command.callback.__module__.rsplit(".", 1)[1] for command in app.registered_commands}
    missing = [f"{folder}{path.stem}" for names, holds in rows for folder in names if folder.endswith("/")
               for path in sorted((package / folder).glob("*.py"))
               if path.stem != "__init__" and path.stem not in commands | {"cli"}
               and f"`{path.stem}`" not in holds and f"`{path.name}`" not in holds]
    assert missing == []
