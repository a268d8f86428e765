from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import (
    AllowOutsidePaths,
    AugmentPreset,
    Brightness,
    Config,
    Contrast,
    Crop,
    Flip,
    Hue,
    LabelColumns,
    Labels,
    Noise,
    Overwrite,
    Rotation,
    Saturation,
    Seed,
    Translation,
    Zoom,
)
from tlcli.console import literal, out
from tlcli.storage import location

NAME = "augment"

DataOrImage = Annotated[
    Path,
    typer.Argument(parser=location, help="A dataset folder (its training images are used) or one image.",
                   metavar="DATA_OR_IMAGE", show_default=False),
]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", parser=location, metavar="PATH", show_default=False,
                                             help="Where to write the grid (.png).  \\[default: augment_preview.png]")]
Samples = Annotated[int, typer.Option(help="Rows: images picked in turn from each class.")]
Variants = Annotated[int, typer.Option(help="Augmented versions shown beside each original.")]
PreviewSize = Annotated[int, typer.Option(help="Size in pixels of each image in the grid.")]


def run(
    data: DataOrImage,
    out_path: Out = None,
    overwrite: Overwrite = False,
    samples: Samples = 8,
    variants: Variants = 5,
    seed: Seed = 0,
    image_size: PreviewSize = 128,
    augment: AugmentPreset = None,
    rotation: Rotation = None,
    translation: Translation = None,
    zoom: Zoom = None,
    flip: Flip = None,
    crop: Crop = None,
    brightness: Brightness = None,
    contrast: Contrast = None,
    saturation: Saturation = None,
    hue: Hue = None,
    noise: Noise = None,
    config: Config = None,
    labels: Labels = None,
    label_columns: LabelColumns = None,
    allow_outside_paths: AllowOutsidePaths = False,
) -> None:
    """Preview augmentation: images beside augmented versions drawn by the training pipeline (default preset: standard)."""
    from tlcli.augment.preview import PreviewConfig, preview

    flags = dict(rotation=rotation, translation=translation, zoom=zoom, flip=flip, crop=crop, brightness=brightness,
                 contrast=contrast, saturation=saturation, hue=hue, noise=noise)
    written = preview(PreviewConfig(
        source=data, out=out_path, overwrite=overwrite, samples=samples, variants=variants, seed=seed,
        image_size=image_size, augment=augment, flags=flags, config=config, labels=labels,
        label_columns=label_columns, allow_outside_paths=allow_outside_paths,
    ))
    out.print(
        f"Wrote {literal(written.path)}: {written.rows} image(s), each with {written.columns - 1} "
        f"variant(s) ({written.augmentation})."
    )
