"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.augment import FLIPS, PRESETS, STRENGTHS
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

# Augmentation: the same flags for `tlcli train` and `tlcli augment`. None means "not given",
# so a preset or the TOML [augmentation] table decides (tlcli.augment.resolve_augment).
_AUGMENTATION = "Augmentation (flags override --augment and the --config file)"


def _strength(name: str):
    largest, meaning = STRENGTHS[name]
    return Annotated[
        Optional[float],
        typer.Option(
            f"--{name}", help=f"0-{largest:g}: {meaning}.", rich_help_panel=_AUGMENTATION,
            show_default=False,
        ),
    ]


def _choice(flag: str, choices, meaning: str):
    return Annotated[
        Optional[str],
        typer.Option(
            flag, help=f"{meaning}: {'|'.join(choices)}.", metavar="[" + "|".join(choices) + "]",
            rich_help_panel=_AUGMENTATION, show_default=False,
        ),
    ]


AugmentPreset = _choice("--augment", PRESETS, "Augmentation preset")
Rotation = _strength("rotation")
Translation = _strength("translation")
Zoom = _strength("zoom")
Flip = _choice("--flip", FLIPS, "Random mirroring")
Crop = _strength("crop")
Brightness = _strength("brightness")
Contrast = _strength("contrast")
Saturation = _strength("saturation")
Hue = _strength("hue")
Noise = _strength("noise")
ConfigFile = Annotated[
    Optional[Path],
    typer.Option(
        "--config", help="TOML settings file; its \\[augmentation] table sets the same keys as the flags.",
        show_default=False,
    ),
]
