"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.backbones import MODEL_NAMES

DataPath = Annotated[
    Path,
    typer.Argument(
        help="Dataset folder: DATA/<class>/<images> or DATA/train|val|test/<class>/<images>.",
        metavar="DATA",
        show_default=False,
    ),
]
ModelName = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help=f"Backbone: {'|'.join(MODEL_NAMES)}.",
        metavar="[" + "|".join(MODEL_NAMES) + "]",
    ),
]
ImageSize = Annotated[
    Optional[int],
    typer.Option(help="Square input size in pixels (default: the backbone's native size).", show_default=False),
]
Weights = Annotated[
    str,
    typer.Option(help="imagenet (downloads once), none, a .h5 / .weights.h5 file, a run directory or .keras model."),
]
ValSplit = Annotated[
    float, typer.Option(help="Flat layout: fraction of each class held out for validation.")
]
TestSplit = Annotated[
    float, typer.Option(help="Flat layout: fraction of each class held out for testing.")
]
Seed = Annotated[int, typer.Option(help="Random seed for splits, shuffling and initialisation.")]
Strict = Annotated[bool, typer.Option("--strict", help="Treat any unusable file as an error.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
RunPath = Annotated[
    Path,
    typer.Argument(
        help="A run directory, or a .keras file with labels.txt beside it.",
        metavar="MODEL",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace --out if it already exists.")]
