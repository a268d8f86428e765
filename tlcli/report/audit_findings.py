"""The page's last part: what `tlcli audit` found in the data (likely label errors, near-duplicate
groups with the leaks across splits first, outliers), each image a thumbnail."""

from __future__ import annotations

from dataclasses import dataclass, field

from tlcli.report.sources import AuditSource
from tlcli.report.text import MISSING, file_name, number
from tlcli.report.thumbnails import Tile

SUSPECTS_SHOWN = 100  # likely label errors shown, worst first; label_errors.csv lists them all
GROUPS_SHOWN = 50  # near-duplicate groups shown (leaks first); duplicates.csv lists them all
GROUP_IMAGES = 8  # images shown of one group
OUTLIERS_SHOWN = 24


@dataclass
class DuplicateGroup:
    title: str
    leakage: bool
    tiles: list[Tile]


@dataclass
class AuditFindings:
    folder: str
    summary: list[tuple[str, str]]
    suspects: list[Tile] = field(default_factory=list)
    suspects_total: int = 0
    groups: list[DuplicateGroup] = field(default_factory=list)
    groups_total: int = 0
    outliers: list[Tile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tiles(self) -> list[Tile]:
        return [*self.suspects, *(tile for group in self.groups for tile in group.tiles), *self.outliers]


def audit_findings(source: AuditSource) -> AuditFindings:
    document = source.document
    labels = document.get("label_errors")
    duplicates = document.get("duplicates") or {}
    outliers = document.get("outliers") or {}
    found = AuditFindings(str(source.folder), [
        ("data", str(document.get("data", MISSING))),
        ("read by", f"{document.get('model', MISSING)} ({document.get('weights', MISSING)}) at "
                    f"{document.get('image_size', MISSING)} px"),
        ("images", number(document.get("images"))),
        ("likely label errors", f"{number(labels.get('found'))} of {number(labels.get('checked'))} checked"
                                if labels else "not checked (see the notes)"),
        ("near-duplicate groups", f"{number(duplicates.get('groups'))}, {number(duplicates.get('leakage_groups'))} "
                                  "across splits (leakage)"),
        ("outliers", number(outliers.get("found"))),
    ], notes=[str(note) for note in document.get("notes", [])])
    if labels:
        rows = labels.get("rows") or []
        found.suspects_total = len(rows)
        found.suspects = [Tile(row.get("path", ""), [
            file_name(row.get("path", "")), f"{row.get('split')}: given {row.get('given')}",
            f"suggested {row.get('suggested')} ({_decimals(row.get('suggested_probability'))})",
            f"label quality {_decimals(row.get('label_quality'), 3)}"], alert=True) for row in rows[:SUSPECTS_SHOWN]]
    groups = duplicates.get("rows") or []
    found.groups_total = len(groups)
    found.groups = [_group(group) for group in groups[:GROUPS_SHOWN]]
    found.outliers = [Tile(row.get("path", ""), [file_name(row.get("path", "")), f"{row.get('split')}: {row.get('label')}",
                                                 f"score {_decimals(row.get('score'), 3)}"], alert=True)
                      for row in (outliers.get("rows") or []) if row.get("flagged")][:OUTLIERS_SHOWN]
    return found


def _group(group: dict) -> DuplicateGroup:
    images = group.get("images") or []
    splits = ", ".join(group.get("splits") or [])
    title = (f"group {group.get('group')}: {len(images)} images in {splits}"
             + (" (LEAKAGE across splits)" if group.get("leakage") else "")
             + f", cosine similarity {_decimals(group.get('similarity'), 4)}")
    return DuplicateGroup(title, bool(group.get("leakage")), [
        Tile(image.get("path", ""), [file_name(image.get("path", "")), f"{image.get('split')}: {image.get('label')}"],
             alert=bool(group.get("leakage"))) for image in images[:GROUP_IMAGES]])


def _decimals(value, places: int = 2) -> str:
    return f"{value:.{places}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else MISSING
