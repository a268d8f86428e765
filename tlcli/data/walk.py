"""Walking a dataset's folders: each real folder and file once, whatever symbolic links do.

A link can loop (`ln -s .. cat/up` puts the whole dataset inside a class again; two `ln -s . x`
links in one folder make the walk grow without end), lead to a folder or file that is already
counted (one image in two classes, or in training and validation), lead nowhere, or lead out of
the dataset. Folders are read in place first and links followed afterwards, so that a folder's
own files keep their class; a link is followed only when it leads somewhere new, and every link
that loops, repeats, breaks or leaves the dataset is recorded.

A dataset named by a URL (object storage) has no links: its folders are listed through
TensorFlow's file systems, each once.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable

from tlcli.storage import Url

_SYSTEM_FILES = {"thumbs.db", "desktop.ini", "__macosx"}

OUTSIDE, LOOP, REPEAT, BROKEN = "outside", "loop", "repeat", "broken"


def is_hidden(path: Path | Url) -> bool:
    return path.name.startswith(".") or path.name.lower() in _SYSTEM_FILES


@dataclass(frozen=True)
class Link:
    """A symbolic link (or a second path to a file or folder), where it leads, what was done.

    `status` is OUTSIDE (followed: it leads out of the walked folder), LOOP (not followed: it
    leads to a folder that contains it), REPEAT (skipped: what it leads to is counted already,
    as `first`) or BROKEN (it leads nowhere).
    """

    path: Path
    target: Path
    status: str
    first: Path | None = None

    @property
    def followed(self) -> bool:
        return self.status == OUTSIDE

    def describe(self) -> str:
        return {
            OUTSIDE: "followed: it leads outside DATA",
            LOOP: "not followed: it loops back to a folder that contains it",
            REPEAT: f"skipped: already counted as {self.first}",
            BROKEN: "skipped: it leads nowhere (a missing target, or links that loop)",
        }[self.status]

    def to_dict(self) -> dict:
        document = {"path": str(self.path), "target": str(self.target), "status": self.status}
        if self.first:
            document["first"] = str(self.first)
        return document | {"reason": self.describe()}


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _contains(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Walk:
    def __init__(self, root: Path):
        self.given = str(root)
        self.root = os.path.realpath(root)
        self.files: dict[Hashable, list[Path]] = {}
        self.links: list[Link] = []
        self.seen: dict[tuple[int, int], Path] = {}  # folders and files counted, by device and inode
        self.waiting: deque[tuple[Hashable, Path]] = deque()  # links met, followed after the folders

    def in_place(self, folder: Path) -> bool:
        """True unless a link leads to the folder (it is one, or it lies below one)."""
        unlinked = os.path.normpath(os.path.join(self.root, os.path.relpath(folder, self.given)))
        return os.path.realpath(folder) == unlinked

    def enter(self, key: Hashable, folder: Path) -> None:
        if not self.first_time(folder):
            return
        for child in sorted(os.scandir(folder), key=lambda entry: entry.name):
            path = folder / child.name
            if is_hidden(path):
                continue
            if child.is_symlink():
                self.waiting.append((key, path))
            elif child.is_dir():
                self.enter(key, path)
            elif child.is_file() and self.first_time(path):
                self.files[key].append(path)

    def first_time(self, path: Path) -> bool:
        """Count a folder or file the first time it is reached; record a repeat after that."""
        identity = _identity(path)
        if identity in self.seen:
            self.links.append(Link(path, Path(os.path.realpath(path)), REPEAT, self.seen[identity]))
            return False
        self.seen[identity] = path
        return True

    def follow(self, key: Hashable, path: Path) -> None:
        target = os.path.realpath(path)
        if not path.exists():
            self.links.append(Link(path, Path(target), BROKEN))
            return
        if path.is_dir() and _contains(target, os.path.realpath(path.parent)):
            self.links.append(Link(path, Path(target), LOOP))
            return
        if not _contains(self.root, target) and _identity(path) not in self.seen:
            self.links.append(Link(path, Path(target), OUTSIDE))
        if path.is_dir():
            self.enter(key, path)
        elif path.is_file() and self.first_time(path):
            self.files[key].append(path)


def walk(root: Path, folders: Iterable[tuple[Hashable, Path]]) -> tuple[dict[Hashable, list[Path]], list[Link]]:
    """The visible files below each (key, folder), sorted, and the links met on the way.

    `folders` lie below `root` (or are `root`); what leads out of `root` is OUTSIDE. Hidden
    files and folders are skipped. A file reached twice is listed once, under the first key
    that reaches it in place (not through a link), in the order `folders` are given.
    """
    if isinstance(root, Url):
        return {key: sorted(files_below(folder)) for key, folder in folders}, []
    state = _Walk(root)
    folders = [(key, Path(folder)) for key, folder in folders]
    for key, folder in folders:
        state.files[key] = []
        if state.in_place(folder):
            state.enter(key, folder)
    # Linked class folders come before the links found inside folders, so that a class folder
    # that is a link keeps its files.
    for key, folder in folders:
        if not state.in_place(folder):
            state.follow(key, folder)
    while state.waiting:
        state.follow(*state.waiting.popleft())
    return {key: sorted(paths) for key, paths in state.files.items()}, state.links


def files_below(folder: Url) -> Iterable[Url]:
    """The visible files below a folder in object storage (which has no links to follow)."""
    for child in folder.iterdir():
        if is_hidden(child):
            continue
        if child.is_dir():
            yield from files_below(child)
        else:
            yield child
