"""`tlcli augment`: a grid showing what augmentation does to a dataset's images.

The variants come from the training pipeline itself (`image_dataset(..., augment=...)`), so
the preview shows exactly what training would see with the same settings and seed.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import AugmentConfig, augmentation_from_options, describe
from tlcli.data.dataset import Sample, SplitOptions, load_dataset
from tlcli.data.labels import LabelFileFields
from tlcli.data.images import Problem, check_image
from tlcli.errors import TlcliError
from tlcli.runs.atomic import write_atomic
from tlcli.runs.outputs import claim_file
from tlcli.storage import location

LABEL_WIDTH = 110  # the row-label column, in pixels
HEADER_HEIGHT = 22  # the column-title row
GAP = 4
# Larger cells show no more on a screen, and the float pixels of the 8 x 6 default grid at
# 1024 px already take 0.6 GB while the grid is drawn.
MAX_PREVIEW_SIZE = 1024
DEFAULT_PREVIEW = Path("augment_preview.png")  # in the working folder


@dataclass(frozen=True)
class PreviewConfig(LabelFileFields):
    """What `tlcli augment` is asked: the images, the augmentation to show, and the grid's shape."""

    source: Path  # a dataset folder (its training images) or one image
    out: Path | None = None  # None: DEFAULT_PREVIEW
    overwrite: bool = False
    samples: int = 8
    variants: int = 5
    seed: int = 0
    image_size: int = 128
    augment: str | None = None  # a preset; None: the --config file's, else standard
    flags: dict = field(default_factory=dict)  # the strength flags by name, None where not given
    config: Path | None = None  # a TOML file whose [augmentation] table the flags override


@dataclass(frozen=True)
class Preview:
    path: Path
    rows: int
    columns: int  # the original and its variants
    augmentation: str = ""  # the techniques shown, e.g. `rotation 0.1, flip horizontal`


def preview(config: PreviewConfig) -> Preview:
    """`tlcli augment`: the augmentation settings (the flags over the --config file over the
    preset, standard by default), then the grid of their variants written (see write_preview)."""
    settings = augmentation_from_options(config.augment, config.flags, config.config, default="standard")
    return write_preview(config.source, config.out, settings, samples=config.samples, variants=config.variants,
                         image_size=config.image_size, seed=config.seed, labels=config.label_file(),
                         overwrite=config.overwrite)


def choose_samples(samples, class_names, count: int, seed: int) -> list[tuple[Sample, str]]:
    """Up to `count` images, one class after another in turn, picked reproducibly under `seed`."""
    by_class = {label: [] for label in range(len(class_names))}
    for sample in samples:
        by_class[sample.label].append(sample)
    for label, members in by_class.items():
        random.Random(f"{seed}/{label}").shuffle(members)
    chosen = []
    while len(chosen) < count and any(by_class.values()):
        for label, members in by_class.items():
            if members and len(chosen) < count:
                chosen.append((members.pop(), class_names[label]))
    return chosen


def _image_or_dataset(path: Path, count: int, seed: int, labels=None) -> list[tuple[Sample, str]]:
    path = location(path)
    if path.is_file():
        checked = check_image(path)
        if isinstance(checked, Problem):
            raise TlcliError(f"{path} cannot be used: {checked.reason}. Pass an image or a dataset folder.")
        return [(Sample(path, 0, checked.needs_pil), path.name)]
    dataset = load_dataset(path, SplitOptions(seed=seed), labels=labels)  # the training split train would use
    split = "train" if "train" in dataset.splits else next(iter(dataset.splits))
    return choose_samples(dataset.splits[split], dataset.class_names, count, seed)


def _decode(samples: list[Sample], image_size: int, seed: int, augment=None, repeats: int = 1):
    """Run the training pipeline over the samples `repeats` times, one batch per repeat."""
    from tlcli.data.pipeline import image_dataset

    batches = list(
        image_dataset(samples * repeats, image_size, len(samples), seed=seed, with_index=True, augment=augment)
    )
    if len(batches) != repeats or any(len(indices) != len(samples) for _, _, indices in batches):
        raise TlcliError("An image passed the checks but failed to decode. Run `tlcli inspect` on it.")
    return np.stack([images.numpy() for images, _, _ in batches])


def cell_origin(row: int, column: int, image_size: int) -> tuple[int, int]:
    """Top-left (x, y) of a grid cell; column 0 holds the originals."""
    return (
        LABEL_WIDTH + GAP + column * (image_size + GAP),
        HEADER_HEIGHT + GAP + row * (image_size + GAP),
    )


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType scaling
        return ImageFont.load_default()


def render_grid(labels: list[str], originals: np.ndarray, variants: np.ndarray):
    """A Pillow image: one row per label, the original then each variant ([variant, row, ...])."""
    from PIL import Image, ImageDraw

    rows, image_size = originals.shape[0], originals.shape[1]
    columns = 1 + variants.shape[0]
    width, height = cell_origin(rows, columns, image_size)
    grid = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(grid), _font()
    for column in range(columns):
        x, _ = cell_origin(0, column, image_size)
        title = "original" if column == 0 else f"variant {column}"
        if draw.textlength(title, font=font) > image_size + GAP:  # narrow cells: short titles
            title = "" if column == 0 else str(column)
        draw.text((x, GAP), title, fill="black", font=font)
    for row, label in enumerate(labels):
        x, y = cell_origin(row, 0, image_size)
        text = label if draw.textlength(label, font=font) <= LABEL_WIDTH - GAP else label[:12] + "..."
        draw.text((GAP, y + image_size // 2), text, fill="black", font=font, anchor="lm")
        cells = [originals[row]] + [variant[row] for variant in variants]
        for column, pixels in enumerate(cells):
            # Round, do not truncate: the original column must show the decoded pixels.
            tile = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
            grid.paste(tile, cell_origin(row, column, image_size))
    return grid


def write_preview(
    source: Path,
    out: Path | None,
    config: AugmentConfig,
    *,
    samples: int = 8,
    variants: int = 5,
    image_size: int = 128,
    seed: int = 0,
    labels=None,
    overwrite: bool = False,
) -> Preview:
    """Pick images (of a dataset's class folders, or of `labels`, a data.labels.LabelFile),
    augment them through the training pipeline, and write the grid as PNG to `out` (a file or a
    URL; default augment_preview.png), claimed through the output policy (runs.outputs)."""
    for name, value, least in (("--samples", samples, 1), ("--variants", variants, 1), ("--image-size", image_size, 8)):
        if value < least:
            raise TlcliError(f"{name} {value} is too small. Use {least} or more.")
    if image_size > MAX_PREVIEW_SIZE:
        raise TlcliError(
            f"--image-size {image_size} is too large for a preview (maximum {MAX_PREVIEW_SIZE}: a screen shows "
            f"no more). Use --image-size {MAX_PREVIEW_SIZE} or less."
        )
    source = location(source)
    out = claim_file(out if out is not None else DEFAULT_PREVIEW, suffix=".png", overwrite=overwrite,
                     default=out is None, data=(source if source.is_dir() else None, labels and labels.path.parent),
                     sources={source: "the image being previewed"})
    chosen = _image_or_dataset(source, samples, seed, labels)
    pictures = [sample for sample, _ in chosen]
    originals = _decode(pictures, image_size, seed)[0]
    augmenter = build_augmenter(config, seed)
    if augmenter is None:
        augmented = np.stack([originals] * variants)
    else:
        augmented = _decode(pictures, image_size, seed, augment=augmenter, repeats=variants)
    grid = render_grid([label for _, label in chosen], originals, augmented)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=True)
    write_atomic(out, buffer.getvalue())
    return Preview(out, len(chosen), 1 + variants, describe(config))
