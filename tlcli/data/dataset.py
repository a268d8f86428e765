"""Finding a dataset's images, checking them, and splitting them.

A dataset is a folder of class folders, either split already (`DATA/train|val|test/<class>/`)
or flat (`DATA/<class>/`, split here with a seeded, stratified split), or a packed dataset
(`tlcli pack`: shards, split already), on a local disk or at a URL (`tlcli.storage`). Nothing
in this module imports TensorFlow for a local dataset: `pipeline.py` turns the result into a
`tf.data` pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tlcli.data.check_cache import checked_images
from tlcli.data.images import ImageInfo, Problem, is_image_name
from tlcli.data.labels import LabelFile, read_listing
from tlcli.data.packed import PackedSplit, is_packed, read_encoded, read_pack
from tlcli.data.walk import Link, is_hidden, walk
from tlcli.errors import TlcliError
from tlcli.storage import check_readable, location

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
LAYOUT_HELP = "Expected DATA/<class>/<images> or DATA/train|val|test/<class>/<images>."


def _visible_children(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if not is_hidden(child))


@dataclass(frozen=True)
class Sample:
    """One image and its class (`label`), or with multi-label data its multi-hot `targets`, one
    0/1 per class name, and `label` -1. A separate field rather than a label that is sometimes a
    tuple: every single-label reader of `label` stays as it is."""

    path: Path
    label: int
    needs_pil: bool = False
    targets: tuple[int, ...] | None = None
    record: tuple[PackedSplit, int] | None = None  # packed: the split's shards, and its position there


@dataclass
class Scan:
    """What is on disk: class folders per split, and what every file turned out to be."""

    root: Path
    layout: str  # "splits" or "flat"
    files: dict[str, dict[str, list[Path]]]  # split ("all" when flat) -> class -> files
    checked: dict[Path, ImageInfo | Problem] = field(default_factory=dict)
    stray_images: list[Path] = field(default_factory=list)  # images outside any class folder
    links: list[Link] = field(default_factory=list)  # symbolic links met, and what was done with them
    labels: LabelFile | None = None  # the label file that listed the images, if any
    listing_problems: list[Problem] = field(default_factory=list)  # its rows that name no usable image
    listing_notes: list[str] = field(default_factory=list)
    label_sets: dict[str, dict[Path, tuple[str, ...]]] | None = None  # multi-label: split -> image -> labels

    @property
    def problems(self) -> list[Problem]:
        found = [r for r in self.checked.values() if isinstance(r, Problem)]
        found += [Problem(p, "not inside a class folder, so it has no label") for p in self.stray_images]
        found += self.listing_problems
        return sorted(found, key=lambda problem: str(problem.path))

    def good_files(self, split: str, class_name: str) -> list[Path]:
        return [
            path
            for path in self.files[split].get(class_name, [])
            if isinstance(self.checked.get(path), ImageInfo)
        ]


def discover(root: Path, labels: LabelFile | None = None) -> Scan:
    """Find the layout, the classes and their files (from class folders, or the label file),
    without opening any image."""
    root = location(root)
    check_readable(root, "Dataset")
    if not root.exists():
        raise TlcliError(f"Dataset folder {root} does not exist. {LAYOUT_HELP}")
    if not root.is_dir():
        raise TlcliError(f"{root} is a file, not a dataset folder. {LAYOUT_HELP}")
    if labels is not None:
        listing = read_listing(root, labels)
        return Scan(root, listing.layout, listing.files, labels=labels, listing_problems=listing.problems,
                    listing_notes=listing.notes, label_sets=listing.label_sets)
    children = _visible_children(root)
    folders = [child for child in children if child.is_dir()]
    split_folders = [child for child in folders if child.name.lower() in _SPLIT_ALIASES]
    stray = [child for child in children if child.is_file() and is_image_name(child)]

    if split_folders:
        others = [child.name for child in folders if child not in split_folders]
        if others:
            raise TlcliError(
                f"{root} mixes split folders ({', '.join(f.name for f in split_folders)}) with "
                f"other folders ({', '.join(others)}). {LAYOUT_HELP}"
            )
        files: dict[str, dict[str, list[Path]]] = {}
        class_folders = []
        split_folders.sort(key=lambda folder: SPLITS.index(_SPLIT_ALIASES[folder.name.lower()]))
        for folder in split_folders:
            split = _SPLIT_ALIASES[folder.name.lower()]
            if split in files:
                raise TlcliError(
                    f"{root} has two folders for the {split} split. Keep one of them."
                )
            files[split] = {}
            split_children = _visible_children(folder)
            stray += [c for c in split_children if c.is_file() and is_image_name(c)]
            class_folders += [((split, c.name), c) for c in split_children if c.is_dir()]
        found, links = walk(root, class_folders)
        for (split, class_name), paths in found.items():
            files[split][class_name] = paths
        return Scan(root, "splits", files, stray_images=stray, links=links)

    if not folders:
        raise TlcliError(f"{root} has no class folders. {LAYOUT_HELP}")
    found, links = walk(root, [(folder.name, folder) for folder in folders])
    return Scan(root, "flat", {"all": found}, stray_images=stray, links=links)


def split_of(folder: Path) -> str | None:
    """"train", "val" or "test" when a folder is named for a split (val/, valid/, ...)."""
    return _SPLIT_ALIASES.get(location(folder).name.lower())


def split_folder(root: Path, split: str) -> Path | None:
    """The folder that holds `split` ("train", "val" or "test") under a dataset root, if any."""
    for child in _visible_children(location(root)):
        if child.is_dir() and split_of(child) == split:
            return child
    return None


def image_files_below(folder: Path) -> list[Path]:
    """Image files below a folder, recursively and sorted, hidden files and folders skipped.

    Each file is listed once, however many links lead to it; links that loop are not followed.
    """
    found, _ = walk(folder, [(None, folder)])
    return [path for path in found[None] if is_image_name(path)]


def scan(root: Path, advance: Callable[[int], None] | None = None, labels: LabelFile | None = None) -> Scan:
    """Discover a dataset and check every file in it (each file once: see `check_cache`)."""
    found = discover(root, labels)
    # dict.fromkeys: a multi-label image is listed under each of its labels, and checked once.
    paths = list(dict.fromkeys(path for classes in found.files.values() for paths in classes.values() for path in paths))
    if found.label_sets is not None:  # with the images that have none of the labels
        paths = list(dict.fromkeys([*paths, *(path for images in found.label_sets.values() for path in images)]))
    found.checked = checked_images(found.root, paths, advance)
    return found


def count_files(found: Scan) -> int:
    paths = {path for classes in found.files.values() for paths in classes.values() for path in paths}
    return len(paths.union(*found.label_sets.values()) if found.label_sets is not None else paths)


@dataclass(frozen=True)
class SplitOptions:
    val_split: float = 0.2
    test_split: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name, value in (("--val-split", self.val_split), ("--test-split", self.test_split)):
            if not 0.0 <= value < 1.0:
                raise TlcliError(f"{name} {value} is out of range. Use a fraction in [0, 1).")
        if self.val_split + self.test_split >= 1.0:
            raise TlcliError(
                f"--val-split {self.val_split} and --test-split {self.test_split} leave no images "
                "for training. Keep their sum below 1."
            )


@dataclass(frozen=True, kw_only=True)
class SplitFields:
    """The split of a flat dataset as a workflow's config holds it (--val-split, --test-split, --seed)."""

    val_split: float = 0.2
    test_split: float = 0.0
    seed: int = 0

    def split_options(self) -> SplitOptions:
        return SplitOptions(self.val_split, self.test_split, self.seed)


@dataclass(frozen=True)
class Dataset:
    """Labelled, checked images ready for a pipeline, split into train/val/test."""

    root: Path
    layout: str
    class_names: tuple[str, ...]
    splits: dict[str, tuple[Sample, ...]]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    labels: LabelFile | None = None  # the label file the images came from, if not class folders

    @property
    def multi_label(self) -> bool:
        return self.labels is not None and self.labels.multi_label

    @property
    def places(self) -> tuple:
        """Where the dataset lives, which no output may enter: DATA, and a label file's folder."""
        return (self.root,) + ((self.labels.path.parent,) if self.labels is not None else ())

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class (with multi-label data, images that carry the label), in class order."""
        result = {}
        for split, samples in self.splits.items():
            if self.multi_label:
                result[split] = {name: sum(sample.targets[i] for sample in samples)
                                 for i, name in enumerate(self.class_names)}
                continue
            per_label = Counter(sample.label for sample in samples)
            result[split] = {name: per_label.get(i, 0) for i, name in enumerate(self.class_names)}
        return result

    def split(self, name: str) -> tuple[Sample, ...]:
        if name not in self.splits:
            raise TlcliError(
                f"{self.root} has no {name} split (it has: {', '.join(self.splits)}). "
                f"Add a {name}/ folder, or use a flat layout with --val-split / --test-split."
            )
        return self.splits[name]


def _stratified_split(
    files: dict[str, list[Path]], options: SplitOptions, fractions: dict[str, float]
) -> dict[str, dict[str, list[Path]]]:
    """Split each class's files by the given fractions, reproducibly under the seed."""
    result: dict[str, dict[str, list[Path]]] = {"train": {}, **{split: {} for split in fractions}}
    for class_name, paths in files.items():
        shuffled = sorted(paths)
        random.Random(f"{options.seed}/{class_name}").shuffle(shuffled)
        start = 0
        for split, fraction in fractions.items():
            # Every class gets at least one image in each requested split.
            take = max(1, round(len(shuffled) * fraction)) if fraction > 0 else 0
            result[split][class_name] = sorted(shuffled[start : start + take])
            start += take
        result["train"][class_name] = sorted(shuffled[start:])
    return result


def build_dataset(found: Scan, options: SplitOptions = SplitOptions(), lenient: bool = False) -> Dataset:
    """Split and validate a scanned dataset; raise a TlcliError when it cannot be trained on.

    `lenient` (for `tlcli audit`, which reads a dataset to find what is wrong with it) accepts
    what training refuses: a single class, a class too small to split, and splits whose classes
    differ (the classes are then those of every split together, with a note).
    """
    if found.label_sets is not None:
        return _build_multi_label(found, options)
    per_split, notes = _split_files(found, options, lenient)
    if not any(per_split.values()) or lenient and not any(any(classes.values()) for classes in per_split.values()):
        raise TlcliError(_nothing_usable(found))
    if lenient:
        class_names = _all_classes(per_split, notes)
    else:
        class_names = _check_classes(found.root, per_split, found.labels is not None)
    class_names = _check_names(found, class_names)
    label_of = {name: index for index, name in enumerate(class_names)}
    splits = {}
    for split in SPLITS:
        if split not in per_split:
            continue
        samples = [
            Sample(path, label_of[name], found.checked[path].needs_pil)
            for name in class_names
            for path in per_split[split].get(name, ())
        ]
        splits[split] = tuple(sorted(samples, key=lambda sample: str(sample.path)))
    return Dataset(
        root=found.root,
        layout=found.layout,
        class_names=tuple(class_names),
        splits=splits,
        problems=tuple(found.problems),
        notes=tuple(found.listing_notes + notes),
        labels=found.labels,
    )


def _build_multi_label(found: Scan, options: SplitOptions) -> Dataset:
    """A multi-label dataset: the class names are the sorted set of labels, each sample's targets
    multi-hot. Without a split column (or val rows) the split is seeded and random, not
    stratified: stratifying label sets (iterative stratification) is left for later."""
    label_sets = {path: names for images in found.label_sets.values() for path, names in images.items()}
    good = {split: sorted(path for path in images if isinstance(found.checked.get(path), ImageInfo))
            for split, images in found.label_sets.items()}
    notes = []
    if found.layout == "flat":
        fractions = {"val": options.val_split, "test": options.test_split}
        good = _random_split(good.pop("all", []), options, {split: value for split, value in fractions.items() if value > 0})
        notes.append("split " + ", ".join(f"{split} {value:.0%}" for split, value in fractions.items() if value > 0)
                     + f" at random (not stratified: multi-label) with seed {options.seed}")
    elif "train" in good and "val" not in good and options.val_split > 0:
        good.update(_random_split(good["train"], options, {"val": options.val_split}))
        notes.append(f"no val rows: took {options.val_split:.0%} of the train rows at random as validation")
    class_names = _check_names(found, sorted({name for paths in good.values() for path in paths
                                              for name in label_sets[path]}))
    if len(class_names) < 2:
        raise TlcliError(f"{found.labels.path} has {len(class_names)} label ({', '.join(class_names) or 'none'}); "
                         "multi-label classification needs at least 2.")
    if not good.get("train"):
        raise TlcliError(f"{found.labels.path} leaves no usable images for training. Add train rows.")
    untrained = sorted(set(class_names) - {name for path in good["train"] for name in label_sets[path]})
    if untrained:
        notes.append(f"label(s) {', '.join(untrained)} appear in no training image, so the model cannot learn them: "
                     "their threshold stays 0.5. Add training rows with them")
    splits = {}
    for split in SPLITS:
        if split in good:
            splits[split] = tuple(
                Sample(path, -1, found.checked[path].needs_pil,
                       tuple(int(name in label_sets[path]) for name in class_names))
                for path in good[split])
    return Dataset(found.root, found.layout, tuple(class_names), splits, tuple(found.problems),
                   tuple(found.listing_notes + notes), found.labels)


def _random_split(paths: list[Path], options: SplitOptions, fractions: dict[str, float]) -> dict[str, list[Path]]:
    """Split files by the given fractions at random, reproducibly under the seed (each requested
    split gets at least one file)."""
    shuffled = sorted(paths)
    random.Random(f"{options.seed}/multi-label").shuffle(shuffled)
    result, start = {}, 0
    for split, fraction in fractions.items():
        take = max(1, round(len(shuffled) * fraction))
        result[split] = sorted(shuffled[start : start + take])
        start += take
    result["train"] = sorted(shuffled[start:])
    return result


def _split_files(found: Scan, options: SplitOptions, lenient: bool = False) -> tuple[dict, list[str]]:
    """The usable files per split and class: the folders' own splits, or a seeded stratified
    split of a flat layout (and of train/ for a missing val/); with a note on how they were split.
    `lenient`: a class too small to reach every split is split all the same (see build_dataset)."""
    good = {
        split: {name: found.good_files(split, name) for name in classes}
        for split, classes in found.files.items()
    }
    if found.layout == "flat":
        fractions = {"val": options.val_split, "test": options.test_split}
        fractions = {split: value for split, value in fractions.items() if value > 0}
        if not lenient:
            _require_enough(good["all"], found.root, minimum=max(2, 1 + len(fractions)))
        note = (
            "split " + ", ".join(f"{split} {value:.0%}" for split, value in fractions.items())
            + f" per class with seed {options.seed}"
            if fractions
            else "no validation split (--val-split 0)"
        )
        return _stratified_split(good["all"], options, fractions), [note]
    per_split, notes = dict(good), []
    if "train" in per_split and "val" not in per_split and options.val_split > 0:
        if not lenient:
            _require_enough(per_split["train"], found.root / "train", minimum=2)
        per_split.update(_stratified_split(per_split["train"], options, {"val": options.val_split}))
        notes.append(f"no val/ folder: took {options.val_split:.0%} of train/ per class as validation"
                     if found.labels is None else
                     f"no val rows: took {options.val_split:.0%} of the train rows per label as validation")
    return per_split, notes


def _check_names(found: Scan, class_names: list[str]) -> list[str]:
    """Refuse a class name with a control character (a newline in a CSV cell, say): labels.txt
    holds one name a line, and every report and table would show it broken."""
    for name in class_names:
        if any(ord(character) < 32 or ord(character) == 127 for character in name):
            where = f"a label in {found.labels.path}" if found.labels is not None else f"a class folder of {found.root}"
            raise TlcliError(f"The class name {name!r} ({where}) holds a control character such as a newline or "
                             "tab, which a class name cannot. Rename it.")
    return class_names


def _nothing_usable(found: Scan) -> str:
    """Why a scan left no image to train on, and what to do."""
    skipped = f" ({len(found.problems)} file(s) could not be used: see `tlcli inspect`)" if found.problems else ""
    if found.labels is None:
        return f"{found.root} holds no usable image in class folders{skipped}. Expected DATA/<class>/<images>."
    return (
        f"--labels {found.labels.path} names no usable image of {found.root}{skipped}: it has no row with a label "
        "and an image that exists there. Check that DATA is the folder its paths are relative to, and that its "
        "rows have labels."
    )


def _check_classes(root: Path, per_split: dict, listed: bool = False) -> list[str]:
    """The class names, the same in every split; at least two, and no split without images.
    `listed`: the classes are a label file's labels, not folders (said so in messages)."""
    class_sets = {split: sorted(classes) for split, classes in per_split.items()}
    reference_split, class_names = next(iter(class_sets.items()))
    for split, names in class_sets.items():
        if names != class_names:
            only_here = ", ".join(sorted(set(names) - set(class_names))) or "-"
            missing = ", ".join(sorted(set(class_names) - set(names))) or "-"
            if listed:
                raise TlcliError(f"The labels of the {reference_split} and {split} rows differ (only in {split}: "
                                 f"{only_here}; missing from {split}: {missing}). Every split needs the same labels.")
            raise TlcliError(
                f"Class folders differ between {reference_split}/ and {split}/ "
                f"(only in {split}/: {only_here}; missing from {split}/: {missing}). "
                "Every split needs the same class folders."
            )
    if len(class_names) < 2:
        raise TlcliError(
            f"{root} has {len(class_names)} class ({', '.join(class_names) or 'none'}); "
            "classification needs at least 2 class folders."
        )
    for split, classes in per_split.items():
        if not any(classes.values()):
            raise TlcliError(
                f"The {split} split of {root} has no usable images. "
                f"Add images to it, or remove the {split}/ folder."
            )
    if "train" in per_split:
        _require_enough(per_split["train"], root / "train", minimum=1)
    return class_names


def _all_classes(per_split: dict, notes: list[str]) -> list[str]:
    """Every class of every split, noting those that some split lacks (see build_dataset)."""
    present = {split: {name for name, paths in classes.items() if paths} for split, classes in per_split.items()}
    class_names = sorted(set().union(*present.values()))
    for split, names in present.items():
        missing = [name for name in class_names if name not in names]
        if missing:
            notes.append(f"the {split} split has no image of {', '.join(missing)}")
    return class_names


def _require_enough(classes: dict[str, list[Path]], where: Path, minimum: int) -> None:
    for class_name, paths in classes.items():
        if len(paths) < minimum:
            raise TlcliError(
                f"Class {class_name!r} in {where} has {len(paths)} usable image(s); "
                f"at least {minimum} are needed. "
                "Add images, or remove the class (its folder, or its rows in the label file)."
            )


def load_dataset(
    root: Path,
    options: SplitOptions = SplitOptions(),
    strict: bool = False,
    advance: Callable[[int], None] | None = None,
    labels: LabelFile | None = None,
    lenient: bool = False,
) -> Dataset:
    """Scan, check and split a dataset (its class folders, or `labels`), or read a packed one.
    With `strict`, any bad file is an error; `lenient`, see build_dataset."""
    if is_packed(root):
        return packed_dataset(root, labels, strict)
    found = scan(root, advance, labels)
    if strict:
        refuse_problems(found.problems)
    return build_dataset(found, options, lenient)


def encoded_images(samples: Sequence[Sample]) -> list[bytes | None]:
    """Each sample's encoded image: its file's bytes, or a packed sample's record (read from the
    shards once per split, so that a pack needs no source folder); None where it cannot be read."""
    found: list[bytes | None] = [None] * len(samples)
    packed: dict[PackedSplit, list[int]] = {}
    for number, sample in enumerate(samples):
        if sample.record is not None:
            packed.setdefault(sample.record[0], []).append(number)
            continue
        try:
            found[number] = sample.path.read_bytes()
        except OSError:
            pass
    for split, numbers in packed.items():
        for number, image in zip(numbers, read_encoded(split, [samples[number].record[1] for number in numbers])):
            found[number] = image
    return found


def refuse_problems(problems) -> None:
    """--strict: any file that cannot be used is an error."""
    if problems:
        first = problems[0]
        raise TlcliError(
            f"{len(problems)} file(s) cannot be used, e.g. {first.path}: {first.reason}. "
            "Fix or remove them (`tlcli inspect` lists all), or drop --strict to skip them."
        )


def packed_dataset(root: Path, labels: LabelFile | None = None, strict: bool = False) -> Dataset:
    """A packed dataset (`tlcli pack`) as a Dataset: the split, labels and order it was packed with.

    Its samples name the source's files (as the folder's run would) and carry where their
    records are, which the pipeline reads instead of the files.
    """
    if labels is not None:
        raise TlcliError(f"{root} is a packed dataset, which carries its own labels. Drop --labels "
                         "(or pack again with the label file).")
    pack = read_pack(root)
    index = pack.index
    if strict:
        refuse_problems(pack.problems)
    source = location(index["source"]["data"])
    splits = {
        split: tuple(Sample(source / path, label, needs_pil, record=(pack.splits[split], position))
                     for position, (path, label, needs_pil, _) in enumerate(pack.rows[split]))
        for split in SPLITS if split in pack.splits
    }
    return Dataset(pack.root, index["layout"], tuple(index["classes"]), splits, pack.problems,
                   tuple(index.get("notes", ())) + (f"packed from {source}",))
