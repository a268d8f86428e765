"""Reading a TOML settings file (`--config FILE.toml`); the command line overrides what it says."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tlcli.errors import TlcliError


def load_toml(path: Path) -> dict:
    """The file's tables as a dict; a missing file or bad TOML is a one-line TlcliError."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise TlcliError(f"--config {path} {what}. Pass a TOML settings file.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TlcliError(f"--config {path} is not valid TOML ({error}). Fix the file.") from error


def table(document: dict, name: str, path: Path | None = None) -> dict:
    """One `[name]` table of a loaded file ({} when absent)."""
    section = document.get(name, {})
    if not isinstance(section, dict):
        where = f"--config {path}: " if path else ""
        raise TlcliError(f"{where}{name} must be a [{name}] table, not {section!r}.")
    return section
