from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import LabelOptions, PreviewAugmentation, takes_option_groups
from tlcli.commands._options import Overwrite, Seed
from tlcli.commands._config_file import config_option
from tlcli.console import literal, out
from tlcli.storage import location

NAME = "augment"

DataOrImage = Annotated[
    Path,
    typer.Argument(parser=location, help="A dataset folder (its training images are used) or one image.",
                   metavar="DATA_OR_IMAGE", show_default=False),
]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", parser=location, metavar="PATH", show_default="augment_preview.png",
                                             help="Where to write the grid (.png).")]
Samples = Annotated[int, typer.Option(help="Rows: images picked in turn from each class.")]
Variants = Annotated[int, typer.Option(help="Augmented versions shown beside each original.")]
PreviewSize = Annotated[int, typer.Option(help="Size in pixels of each image in the grid.")]


# A --config file is read for its [augmentation] table only: a train's file, whose other settings are not read here.
Config = config_option(help="TOML settings file, as train reads it: only its \\[augmentation] table is read here; the "
                       "flags override it.", tables={"augmentation": PreviewAugmentation}, top=False)


@takes_option_groups
def run(
    data: DataOrImage,
    out_path: Out = None,
    overwrite: Overwrite = False,
    samples: Samples = 8,
    variants: Variants = 5,
    seed: Seed = 0,
    image_size: PreviewSize = 128,
    augmentation: PreviewAugmentation = PreviewAugmentation(),
    config: Config = None,
    labels: LabelOptions = LabelOptions(),
) -> None:
    """Preview augmentation: images beside augmented versions drawn by the training pipeline (default preset: standard)."""
    from tlcli.augment.preview import PreviewConfig, preview

    written = preview(PreviewConfig(
        source=data, out=out_path, overwrite=overwrite, samples=samples, variants=variants, seed=seed,
        image_size=image_size, augment=augmentation.augment, flags=augmentation.flags(), **asdict(labels),
    ))
    out.print(
        f"Wrote {literal(written.path)}: {written.rows} image(s), each with {written.columns - 1} "
        f"variant(s) ({written.augmentation})."
    )
