"""`tlcli inspect`: what is in a dataset and what is wrong with it."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.data.dataset import Scan, SplitFields, SplitOptions, build_dataset, count_files, discover, scan
from tlcli.data.labels import MultiLabelFileFields
from tlcli.data.images import HUGE_PIXELS, ImageInfo
from tlcli.data.packed import Pack, is_packed, read_pack, verify_shards
from tlcli.data.walk import BROKEN, LOOP, OUTSIDE, REPEAT, Link
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events

# A class this many times larger than the smallest one skews a classifier towards it.
IMBALANCE_RATIO = 3.0
_PLAIN_MODES = {"RGB", "L"}


@dataclass(frozen=True)
class InspectConfig(MultiLabelFileFields, SplitFields):
    """What `tlcli inspect` is asked: a dataset, and the split and label file it would be trained with."""

    data: Path

    def __post_init__(self):
        self.split_options()
        self.label_file()  # a bad --label-columns is refused here



@dataclass
class Report:
    root: str
    layout: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> usable images
    files: int
    usable: int
    formats: dict[str, int]
    modes: dict[str, int]
    sizes: dict[str, dict[str, int]]  # "width"/"height" -> min/median/max
    huge_images: dict  # how many are over HUGE_PIXELS, and the largest
    problems: list[dict[str, str]]
    duplicates: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)  # symbolic links and what was done with them
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    labels: str | None = None  # the label file that listed the images, if not class folders

    @property
    def clean(self) -> bool:
        return not (self.problems or self.warnings or self.duplicates)

    def to_dict(self) -> dict:
        return {**self.__dict__, "clean": self.clean}


def inspect_data(config: InspectConfig, events: Events = SILENT) -> Report:
    """Check every file of a dataset (counted as it goes) and report what is in it and what is
    wrong; a packed dataset's report comes from its index, once every shard is verified."""
    label_file = config.label_file()
    if is_packed(config.data):
        if label_file is not None:
            raise TlcliError(f"{config.data} is a packed dataset, which carries its own labels. Drop --labels.")
        return inspect_pack(read_pack(config.data), events)
    with events.counting("Checking images", count_files(discover(config.data, label_file))) as advance:
        found = scan(config.data, advance, label_file)
    return inspect_dataset(found, config.split_options())


def inspect_dataset(found: Scan, options: SplitOptions = SplitOptions()) -> Report:
    infos = {path: info for path, info in found.checked.items() if isinstance(info, ImageInfo)}
    classes = sorted({name for per_class in found.files.values() for name in per_class})
    counts = {
        split: {name: len(found.good_files(split, name)) for name in classes if name in per_class}
        for split, per_class in found.files.items()
    }
    report = Report(
        root=str(found.root),
        layout=found.layout,
        classes=classes,
        counts=counts,
        files=len(found.checked),
        usable=len(infos),
        formats=dict(Counter(info.format for info in infos.values()).most_common()),
        modes=dict(Counter(info.mode for info in infos.values()).most_common()),
        sizes=_size_summary(infos.values()),
        huge_images=_huge_images(infos),
        problems=[{"path": str(p.path), "reason": p.reason} for p in found.problems],
        labels=str(found.labels.path) if found.labels is not None else None,
    )
    report.warnings += found.listing_notes  # images the label file leaves out, labels with one image
    report.duplicates = _duplicates(found, infos)
    report.links = [link.to_dict() for link in found.links]
    report.warnings += _imbalance_warnings(counts) + _link_summaries(found.links, LOOP, REPEAT, BROKEN)
    report.notes += _link_summaries(found.links, OUTSIDE)
    for group in report.duplicates:
        if group["kind"] != "same split":
            report.warnings.append(
                f"{len(group['paths'])} identical files across {group['kind']}: "
                f"{', '.join(group['paths'])}"
            )
    odd_modes = {mode: n for mode, n in report.modes.items() if mode not in _PLAIN_MODES}
    if odd_modes:
        report.notes.append(
            "converted to RGB when read: "
            + ", ".join(f"{n} {mode}" for mode, n in odd_modes.items())
        )
    report.notes += [f"{path}: {info.note}" for path, info in infos.items() if info.note]
    try:
        dataset = build_dataset(found, options)
        report.notes += [note for note in dataset.notes if note not in found.listing_notes]
    except TlcliError as error:
        report.warnings.insert(0, f"cannot train on it as it is: {error}")
    return report


def inspect_pack(pack: Pack, events: Events = SILENT) -> Report:
    """A packed dataset's report, from its index: what was packed and what was left out. Every
    shard is read and compared with its sha256 first (a damaged pack is an error)."""
    with events.counting("Verifying shards", len(pack.index["shards"])) as advance:
        verify_shards(pack, advance)
    index = pack.index
    usable = sum(index["records"].values())
    report = Report(
        root=str(pack.root),
        layout="packed",
        classes=list(index["classes"]),
        counts=index["counts"],
        files=usable + len(index["problems"]),
        usable=usable,
        formats=index["formats"],
        modes=index["modes"],
        sizes=index["image_sizes"],
        huge_images={"count": 0, "over_megapixels": round(HUGE_PIXELS / 1e6, 1), "largest": None},
        problems=[{"path": str(p.path), "reason": p.reason} for p in pack.problems],
        labels=(index["source"]["labels"] or {}).get("labels"),
    )
    report.warnings += _imbalance_warnings(report.counts)
    report.notes += [*index["notes"], f"packed from {index['source']['data']} into {len(index['shards'])} shard(s), "
                     "every one as packed (sha256)"]
    return report


def _size_summary(infos) -> dict[str, dict[str, int]]:
    infos = list(infos)
    if not infos:
        return {}
    summary = {}
    for axis in ("width", "height"):
        values = [getattr(info, axis) for info in infos]
        summary[axis] = {
            "min": min(values),
            "median": int(statistics.median(values)),
            "max": max(values),
        }
    return summary


def _huge_images(infos: dict[Path, ImageInfo]) -> dict:
    """Images Pillow would warn about: slow to decode at full size, which all but JPEG need."""
    huge = {path: info for path, info in infos.items() if info.huge}
    summary = {"count": len(huge), "over_megapixels": round(HUGE_PIXELS / 1e6, 1), "largest": None}
    if huge:
        path, info = max(huge.items(), key=lambda item: (item[1].width * item[1].height, str(item[0])))
        summary["largest"] = {"path": str(path), "width": info.width, "height": info.height}
    return summary


def _imbalance_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    warnings = []
    for split, per_class in counts.items():
        if split in ("val", "test") or len(per_class) < 2:
            continue
        largest = max(per_class, key=per_class.get)
        smallest = min(per_class, key=per_class.get)
        if per_class[smallest] and per_class[largest] / per_class[smallest] >= IMBALANCE_RATIO:
            warnings.append(
                f"class imbalance in {split}: {largest!r} has {per_class[largest]} images, "
                f"{smallest!r} only {per_class[smallest]} "
                f"({per_class[largest] / per_class[smallest]:.1f}x); "
                "consider --class-weight balanced or more images"
            )
    return warnings


_LINK_SUMMARIES = {
    LOOP: "symbolic link(s) loop back to a folder that contains them; not followed",
    REPEAT: "path(s) lead to files or folders already counted; skipped, so each image counts once",
    BROKEN: "symbolic link(s) lead nowhere; skipped",
    OUTSIDE: "symbolic link(s) lead outside DATA; followed",
}


def _link_summaries(links: list[Link], *statuses: str) -> list[str]:
    """One line per kind of link, with the first one as an example."""
    lines = []
    for status in statuses:
        chosen = [link for link in links if link.status == status]
        if chosen:
            example = chosen[0]
            lines.append(f"{len(chosen)} {_LINK_SUMMARIES[status]} (e.g. {example.path} -> {example.target})")
    return lines


def _duplicates(found: Scan, infos: dict[Path, ImageInfo]) -> list[dict]:
    """Groups of byte-identical files. Across splits they leak test images into training."""
    where = {}
    for split, per_class in found.files.items():
        for class_name, paths in per_class.items():
            for path in paths:
                where[path] = (split, class_name)
    groups = defaultdict(list)
    for path, info in infos.items():
        groups[info.digest].append(path)
    found_groups = []
    for paths in groups.values():
        if len(paths) < 2:
            continue
        splits = {where[path][0] for path in paths}
        classes = {where[path][1] for path in paths}
        if len(splits) > 1:
            kind = "splits (leakage)"
        elif len(classes) > 1:
            kind = "classes (conflicting labels)"
        else:
            kind = "same split"
        found_groups.append({"kind": kind, "paths": sorted(str(path) for path in paths)})
    return sorted(found_groups, key=lambda group: group["paths"])
