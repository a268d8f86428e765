"""Label files: a CSV naming each image's label (and maybe its split), instead of class folders.

Columns are found by their header: `path` (or `filename`), `label`, and an optional `split`
holding train, val or test; `--label-columns path=...,label=...,split=...` names others. Paths
are relative to DATA, or else to the CSV's own folder, and may leave out the image's extension
when one image file matches. A path that leaves those folders (through `..`, or absolute) is
refused unless allowed. What the file gets wrong row by row becomes a Problem (a missing file,
an empty label, a path listed twice) that inspect reports and training skips; what makes the
whole file unusable (no such column, not UTF-8, a label written two ways) is one error naming
the row.

With `multi_label`, the label column holds several labels separated by a delimiter (a space
by default, as in `haze primary water`): each image is listed under each of its labels, and
`Listing.label_sets` keeps the whole set. An empty cell is then an image with none of the
labels, not a mistake: with independent labels such images are common.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.data.images import IMAGE_EXTENSIONS, Problem, is_image_name
from tlcli.data.walk import files_below
from tlcli.errors import TlcliError
from tlcli.storage import Location, Url, check_readable, file_sha256, location

COLUMN_NAMES = {"path": ("path", "filename"), "label": ("label",), "split": ("split",)}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class LabelFile:
    """Where the labels are and how to read them (recorded in a run's config.json)."""

    path: Location
    columns: tuple[tuple[str, str], ...] = ()  # ("label", "tags"): a column named otherwise
    allow_outside: bool = False  # paths may leave DATA and the CSV's folder
    multi_label: bool = False  # the label column holds several labels per image
    delimiter: str = " "  # what separates them

    @classmethod
    def parse(cls, path: Path | str | None, columns: str | None = None, allow_outside: bool = False,
              multi_label: bool = False, delimiter: str = " "):
        """From the command line: `--labels FILE --label-columns path=image,label=tags [--multi-label]`."""
        if path is None:
            if columns:
                raise TlcliError("--label-columns names the columns of a label file: add --labels FILE.csv.")
            if multi_label:
                raise TlcliError("--multi-label needs a label file (a folder layout cannot give an image several "
                                 "labels): add --labels FILE.csv.")
            return None
        if multi_label and not delimiter:
            raise TlcliError("--label-delimiter is empty. Give the character between labels, e.g. ' ' or ';'.")
        pairs = []
        for item in (columns or "").split(","):
            if not item.strip():
                continue
            key, _, name = item.partition("=")
            key = key.strip().lower()
            if key not in COLUMN_NAMES or not name.strip():
                raise TlcliError(
                    f"--label-columns {columns!r}: {item.strip()!r} is not KEY=COLUMN with KEY one of "
                    f"{', '.join(COLUMN_NAMES)}. Use e.g. --label-columns path=image_id,label=tags."
                )
            pairs.append((key, name.strip()))
        return cls(location(path), tuple(pairs), allow_outside, multi_label, delimiter)

    def describe(self) -> dict:
        """What a run records to find the labels again and to notice that they changed."""
        return {"labels": str(self.path.resolve()), "labels_sha256": file_sha256(self.path),
                "label_columns": ",".join(f"{key}={name}" for key, name in self.columns) or None,
                "allow_outside_paths": self.allow_outside, "multi_label": self.multi_label,
                "label_delimiter": self.delimiter}

    def changed_since(self, config: dict) -> str | None:
        """A note when this is the label file a run recorded and its content changed since (its
        sha256 differs): the run's classes no longer mean what the file says. None otherwise."""
        recorded, digest = config.get("labels"), config.get("labels_sha256")
        if not recorded or not digest or str(location(recorded)) != str(location(self.path).resolve()):
            return None
        if file_sha256(self.path) == digest:
            return None
        return f"{self.path} has changed since the run was trained (its sha256 differs): check its labels"

    @classmethod
    def recorded(cls, config: dict):
        """The label file a run's config.json records, or None for class folders."""
        return cls.parse(config.get("labels"), config.get("label_columns"), bool(config.get("allow_outside_paths")),
                         bool(config.get("multi_label")), config.get("label_delimiter") or " ")

    def split_labels(self, cell: str) -> tuple[str, ...]:
        """The labels a cell holds: itself, or with `multi_label` its delimited parts (each
        stripped, empty parts dropped, so that `a  b` is a and b), in order, each once."""
        if not self.multi_label:
            return (cell,) if cell else ()
        return tuple(dict.fromkeys(part.strip() for part in cell.split(self.delimiter) if part.strip()))


@dataclass
class Listing:
    """A label file's rows resolved to image files: split ("all" without a split column) ->
    label -> files, plus what was wrong with rows and what the file leaves out."""

    files: dict[str, dict[str, list[Path]]]
    problems: list[Problem] = field(default_factory=list)  # rows that name no usable file or label
    notes: list[str] = field(default_factory=list)  # worth telling, not wrong: unlisted images, ...
    unlisted: list[Path] = field(default_factory=list)  # images under DATA that no row names
    label_sets: dict[str, dict[Path, tuple[str, ...]]] | None = None  # multi-label: split -> image -> labels

    @property
    def layout(self) -> str:
        return "flat" if "all" in self.files else "splits"


def _inside_any(given: Path, bases) -> bool:
    """Whether a path written absolute or with `..` still names a place inside one of `bases`
    (`images/../images/x.png`, or DATA's own absolute path)."""
    for base in bases:
        if isinstance(base, Path):
            resolved = os.path.normpath(given if given.is_absolute() else base / given)
            if os.path.commonpath([resolved, os.path.normpath(base.absolute())]) == os.path.normpath(base.absolute()):
                return True
    return False


def read_listing(root: Path, labels: LabelFile) -> Listing:
    """Read and resolve a label file against the dataset folder `root`."""
    root, csv_path = location(root), labels.path
    check_readable(csv_path, "--labels")
    if csv_path.is_dir():
        raise TlcliError(f"--labels {csv_path} is a folder. Give the CSV file that lists path,label rows.")
    if not csv_path.is_file():
        raise TlcliError(f"--labels {csv_path} does not exist. Give the CSV file that lists path,label rows.")
    header, rows = _read_rows(csv_path)
    column = _find_columns(csv_path, header, dict(labels.columns))
    _check_label_spellings(csv_path, rows, column["label"], labels)

    has_split = "split" in column
    files: dict[str, dict[str, list[Path]]] = {} if has_split else {"all": {}}
    listing = Listing(files, label_sets={} if labels.multi_label else None)
    first_row_of: dict[Path, int] = {}
    bases = [root, csv_path.parent.resolve()]
    # In object storage every file test is a request: list DATA once, and look names up.
    present = set(files_below(root)) if isinstance(root, Url) else None
    for number, row in rows:
        text, label = row.get(column["path"], "").strip(), row.get(column["label"], "")
        path = _resolve(text, bases, labels.allow_outside, csv_path, number, present)
        where = path if path is not None else Path(text or f"{csv_path.name} row {number}")
        if not text:
            listing.problems.append(Problem(where, f"row {number} of {csv_path.name} has an empty path"))
            continue
        names = labels.split_labels(label)
        if not names and not labels.multi_label:
            listing.problems.append(Problem(where, f"row {number} of {csv_path.name} has an empty label"))
            continue
        if path is None:
            listing.problems.append(Problem(where, f"row {number} of {csv_path.name} names a file that does not exist"))
            continue
        if path in first_row_of:
            listing.problems.append(Problem(
                path, f"row {number} of {csv_path.name} lists it again (first at row {first_row_of[path]}); "
                "the first row is used"))
            continue
        first_row_of[path] = number
        split = _split_of(row.get(column["split"], ""), csv_path, number) if has_split else "all"
        files.setdefault(split, {})
        for name in names:
            files[split].setdefault(name, []).append(path)
        if listing.label_sets is not None:
            listing.label_sets.setdefault(split, {})[path] = names
    for split_files in files.values():
        for label in split_files:
            split_files[label].sort()
    _add_notes(listing, root, csv_path, set(first_row_of), present)
    return listing


def _split_of(cell: str, csv_path: Location, number: int) -> str:
    """The split a row's split cell names (train, val or test, in any of SPLIT_NAMES' spellings)."""
    split = SPLIT_NAMES.get(cell.strip().lower())
    if split is None:
        raise TlcliError(
            f"{csv_path} row {number}: split {cell.strip()!r} is not train, val or test. "
            "Write one of them in every row, or leave the split column out."
        )
    return split


def _add_notes(listing: Listing, root: Location, csv_path: Location, listed: set[Location],
               present: set[Url] | None) -> None:
    """Note the images under DATA that no row names (kept in `listing.unlisted`) and the labels
    with a single image."""
    listing.unlisted = (sorted(path for path in present - listed if is_image_name(path)) if present is not None
                        else _unlisted_images(root, listed, csv_path))
    if listing.unlisted:
        listing.notes.append(f"{len(listing.unlisted)} image(s) under {root} are not listed in {csv_path.name} "
                             f"(e.g. {listing.unlisted[0]}) and are left out")
    per_label = Counter(label for split_files in listing.files.values() for label, paths in split_files.items()
                        for _ in paths)
    lonely = sorted(label for label, count in per_label.items() if count == 1)
    if lonely:
        listing.notes.append(f"label(s) with a single image: {', '.join(lonely)}")


def _read_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and (row number, {column: cell, as written}) for every non-empty row (the
    header is row 1)."""
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = csv_path.read_bytes()[: error.start].count(b"\n") + 1
        raise TlcliError(
            f"{csv_path} is not UTF-8 text (byte {error.start}, row {line}). Save it as UTF-8 (CSV UTF-8 in "
            "spreadsheet programs)."
        ) from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [name.strip() for name in next(reader, [])]
        rows = [(number, dict(zip(header, cells)))
                for number, cells in enumerate(reader, start=2) if any(cell.strip() for cell in cells)]
    except csv.Error as error:
        raise TlcliError(f"{csv_path} is not a readable CSV file: {error}. Check its quoting.") from None
    if not header:
        raise TlcliError(f"{csv_path} is empty. It needs a header row such as path,label and one row per image.")
    return header, rows


def _find_columns(csv_path: Path, header: list[str], named: dict[str, str]) -> dict[str, str]:
    lowered = {name.lower(): name for name in header}
    column = {}
    for key, candidates in COLUMN_NAMES.items():
        if key in named:
            if named[key] not in header:
                raise TlcliError(f"--label-columns {key}={named[key]}: {csv_path} has no column {named[key]!r} "
                                 f"(its columns: {', '.join(header)}).")
            column[key] = named[key]
            continue
        found = next((lowered[candidate] for candidate in candidates if candidate in lowered), None)
        if found is not None:
            column[key] = found
        elif key != "split":
            raise TlcliError(
                f"{csv_path} has no {' or '.join(candidates)} column (its columns: {', '.join(header)}). "
                f"Name it with --label-columns {key}=COLUMN."
            )
    return column


def _check_label_spellings(csv_path: Path, rows, label_column: str, labels: LabelFile) -> None:
    """Refuse labels with spaces around them, or one label written in two cases: in a folder
    layout they would be two classes, and here they are almost surely one."""
    first_spelling: dict[str, tuple[str, int]] = {}
    for number, row in rows:
        cell = row.get(label_column, "")
        if not labels.multi_label and cell != cell.strip():
            raise TlcliError(
                f"{csv_path} row {number}: label {cell!r} has spaces around it. Write it as {cell.strip()!r}."
            )
        for label in labels.split_labels(cell):
            _check_spelling(csv_path, number, label, first_spelling)


def _check_spelling(csv_path: Path, number: int, label: str, first_spelling: dict) -> None:
    seen = first_spelling.setdefault(label.lower(), (label, number))
    if seen[0] != label:
        raise TlcliError(
            f"{csv_path} row {number}: label {label!r} differs only in case from {seen[0]!r} (row {seen[1]}). "
            "Spell each label one way."
        )


def _resolve(text: str, bases: list[Location], allow_outside: bool, csv_path: Location, number: int,
             present: set[Url] | None = None) -> Location | None:
    """The file a row names (relative to DATA, else to the CSV's folder; the extension may be
    left out when one image matches), or None when there is none. `present`: the images below a
    DATA in object storage, listed once."""

    def is_file(candidate: Location) -> bool:
        if present is not None and str(candidate).startswith(f"{bases[0]}/"):
            return candidate in present
        return candidate.is_file()

    if not text:
        return None
    given = Path(text)
    if not allow_outside and (given.is_absolute() or ".." in given.parts) and not _inside_any(given, bases):
        raise TlcliError(
            f"{csv_path} row {number}: path {text!r} leaves the dataset folder. Give paths relative to DATA, "
            "or pass --allow-outside-paths to accept it."
        )
    for base in bases:
        candidate = given if given.is_absolute() else base / given
        if is_file(candidate):
            return candidate
        if not given.suffix:
            matches = [candidate.with_suffix(extension) for extension in IMAGE_EXTENSIONS
                       if is_file(candidate.with_suffix(extension))]
            if len(matches) == 1:
                return matches[0]
    return None


def _unlisted_images(root: Path, listed: set[Path], csv_path: Path) -> list[Path]:
    listed_real = {os.path.realpath(path) for path in listed}
    found = []
    for folder, folders, names in os.walk(root):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and is_image_name(path) and os.path.realpath(path) not in listed_real:
                found.append(path)
    return found


@dataclass(frozen=True, kw_only=True)
class LabelFileFields:
    """A label file instead of class folders, as a workflow's config holds it (--labels,
    --label-columns, --allow-outside-paths)."""

    labels: Path | None = None  # a CSV of path,label[,split] rows, instead of class folders
    label_columns: str | None = None  # "path=image,label=tags": the CSV's columns, if named otherwise
    allow_outside_paths: bool = False

    def label_file(self) -> LabelFile | None:
        return LabelFile.parse(self.labels, self.label_columns, self.allow_outside_paths)


@dataclass(frozen=True, kw_only=True)
class MultiLabelFileFields(LabelFileFields):
    """The label file's fields, and several labels per image in it (--multi-label, --label-delimiter)."""

    multi_label: bool = False
    label_delimiter: str = " "  # what separates the labels in the label column

    def label_file(self) -> LabelFile | None:
        return LabelFile.parse(self.labels, self.label_columns, self.allow_outside_paths, self.multi_label,
                               self.label_delimiter)
