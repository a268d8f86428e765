"""Checking each file once: the results of `check_images`, kept between commands.

A second inspect, train or evaluate on unchanged data reads what every file turned out to be
from a small JSON file instead of decoding it again. A file is checked again when its size or
modification time changed, and files that are gone drop out. The cache lives in the user cache
directory (`$XDG_CACHE_HOME/tlcli/checks/`, else `~/.cache/tlcli/checks/`), named after the
resolved DATA path or URL: tlcli never writes into a dataset, which may be read-only, shared, or
tracked by git or DVC.

A file there is tlcli's only if it begins with its format marker; anything else is left alone. A
damaged cache of tlcli's is ignored and written again, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from tlcli.data import images
from tlcli.data.images import ImageInfo, Problem
from tlcli.runs.atomic import write_atomic
from tlcli.storage import Location, Url, is_url, location, relative_name

FORMAT = "tlcli-checks"
VERSION = 1
# The file begins with these bytes (json.dumps keeps the key order): how tlcli knows its own.
_SIGNATURE = f'{{"format":"{FORMAT}"'.encode()
# A file modified this recently may change again within the same modification time (coarse
# file-system clocks), unseen by size and time alone; it is checked, and not kept, until it is older.
RACY_SECONDS = 2.0
# Problems that say nothing about the file's content (a permission, a passing I/O error): a
# fix would not change its size or time, so they are never kept.
_NOT_KEPT = ("cannot be read",)


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlcli" / "checks"


def cache_path(root: Path) -> Path:
    """Where the checks of the dataset `root` are kept."""
    resolved = str(root) if isinstance(root, Url) else os.path.realpath(root)
    return user_cache_dir() / (hashlib.sha256(resolved.encode()).hexdigest()[:20] + ".json")


def checked_images(
    root: Path,
    paths: Iterable[Path],
    advance: Callable[[int], None] | None = None,
) -> dict[Path, ImageInfo | Problem]:
    """`check_images(paths)`, with the results kept for next time in `root`'s check cache.

    Files whose size and modification time match the cache are not opened; the others are
    checked with Pillow, and the cache is written again when anything changed.
    """
    paths = list(paths)
    path_of_cache = cache_path(root)
    entries = _read_entries(path_of_cache) or {}

    started = time.time_ns()
    keys = {path: relative_name(root, path) for path in paths}
    stats = {path: _stat(path) for path in paths}
    results: dict[Path, ImageInfo | Problem] = {}
    for path in paths:
        entry, stat = entries.get(keys[path]), stats[path]
        if entry is not None and stat is not None and entry[:2] == list(stat):
            result = _decode(path, entry[2:])
            if result is not None:
                results[path] = result
    if advance is not None and results:
        advance(len(results))
    to_check = [path for path in paths if path not in results]
    results |= images.check_images(to_check, advance)

    kept = {}
    for path in paths:
        stat, result = stats[path], results[path]
        if stat is None or stat[1] > started - RACY_SECONDS * 1e9 or stat[1] == 0:
            continue  # racy, or on a file system that keeps no modification time (ram://)
        if isinstance(result, Problem) and result.reason.startswith(_NOT_KEPT):
            continue
        kept[keys[path]] = [*stat, *_encode(result)]
    scanned = set(keys.values())
    # Files this scan did not list (another label file, another split) stay while they exist.
    for key, entry in entries.items():
        if key not in scanned and _stat(_path(root, key)) is not None:
            kept[key] = entry
    if kept != entries:
        _write_entries(path_of_cache, kept)
    return {path: results[path] for path in paths}


def _path(root: Location, key: str) -> Location:
    if is_url(key) or os.path.isabs(key):
        return location(key)
    return root / key


def _stat(path: Location) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _encode(result: ImageInfo | Problem) -> list:
    if isinstance(result, Problem):
        return ["problem", result.reason]
    return ["image", result.format, result.mode, result.width, result.height, result.digest, result.needs_pil,
            result.note]


def _decode(path: Path, fields: list) -> ImageInfo | Problem | None:
    """A cached result, or None when the entry is not one tlcli wrote (then the file is checked)."""
    try:
        if fields[0] == "problem" and len(fields) == 2 and isinstance(fields[1], str):
            return Problem(path, fields[1])
        if fields[0] == "image" and len(fields) == 8:
            image_format, mode, width, height, digest, needs_pil, note = fields[1:]
            if all(isinstance(value, str) for value in (image_format, mode, digest)) and \
                    type(width) is int and type(height) is int and isinstance(needs_pil, bool) and \
                    (note is None or isinstance(note, str)):
                return ImageInfo(image_format, mode, width, height, digest, needs_pil, note)
    except (TypeError, ValueError, IndexError):
        pass
    return None


def _is_ours(path: Path) -> bool:
    """True when `path` is a check cache tlcli wrote (whole or damaged), or absent."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_SIGNATURE)) == _SIGNATURE
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _read_entries(path: Path) -> dict[str, list] | None:
    """The entries of a check cache, or None when there is none of tlcli's (missing, damaged,
    someone else's, or of another version)."""
    if not os.path.isfile(path) or not _is_ours(path):
        return None
    try:
        document = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return None
    files = document.get("files")
    if not isinstance(files, dict):
        return None
    return {key: entry for key, entry in files.items()
            if isinstance(entry, list) and len(entry) >= 3 and all(type(value) is int for value in entry[:2])}


def _write_entries(path: Path, entries: dict[str, list]) -> None:
    """Write the cache; one that cannot be written (or a file there that is not tlcli's) only
    means the next run checks the files again."""
    if not _is_ours(path):
        return
    document = json.dumps({"format": FORMAT, "version": VERSION, "files": entries}, separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, document + "\n")
    except OSError:
        pass
