"""Data augmentation for training batches: settings, presets, and the augmenter built from them.

The augmenter (`tlcli.augment.augmenter`) does what Keras's random preprocessing layers do, one warp
for all the geometry, and runs inside the `tf.data` input pipeline
(`tlcli.data.pipeline.image_dataset(..., augment=...)`), on training batches only. It is never part
of a model: Keras's random layers stay active in an exported SavedModel, so a model that
contained them would answer differently on every call.

Nothing here imports TensorFlow until `build_augmenter` is called, so the command line can
import the settings cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tlcli.errors import TlcliError

FLIPS = ("none", "horizontal", "vertical", "both")

# Each strength's largest accepted value and what it means, for --help and error messages.
STRENGTHS = {
    "rotation": (0.5, "rotate by up to this fraction of a full turn either way (0.1 = 36 degrees)"),
    "translation": (1.0, "shift by up to this fraction of the width and height"),
    "zoom": (0.9, "zoom in or out by up to this fraction"),
    "crop": (0.9, "crop a random square keeping (1 - this) to all of each side, resized back"),
    "brightness": (1.0, "add up to this fraction of the pixel range (255) to every pixel"),
    "contrast": (1.0, "scale the contrast by a factor in [1 - this, 1 + this]"),
    "saturation": (1.0, "scale the saturation by up to (1 + this) / (1 - this) either way"),
    "hue": (1.0, "shift the hue by up to half of this fraction of the colour circle"),
    "noise": (1.0, "add Gaussian noise with this standard deviation, as a fraction of 255"),
}


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly each technique changes a training image; 0 (and flip "none") turn it off."""

    rotation: float = 0.0
    translation: float = 0.0
    zoom: float = 0.0
    flip: str = "none"
    crop: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    noise: float = 0.0

    def __post_init__(self):
        if self.flip not in FLIPS:
            raise TlcliError(f"--flip {self.flip!r} is not a flip mode. Use one of: {', '.join(FLIPS)}.")
        for name, (largest, _) in STRENGTHS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TlcliError(f"--{name} {value!r} is not a number. Use a strength in [0, {largest}].")
            if not 0.0 <= value <= largest:
                raise TlcliError(
                    f"--{name} {value} is out of range. Use a strength in [0, {largest}] (0 turns it off)."
                )
            object.__setattr__(self, name, float(value))

    @property
    def is_identity(self) -> bool:
        """True when no technique is on, so images pass through unchanged."""
        return self.flip == "none" and all(getattr(self, name) == 0 for name in STRENGTHS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "none": AugmentConfig(),
    # Position and scale only: no mirror, no colour. Safe for digits, text and photos alike, and
    # the default of fine-tuning (bench/finetune_value.py).
    "shift": AugmentConfig(translation=0.1, zoom=0.1),
    "light": AugmentConfig(
        rotation=0.03, translation=0.05, zoom=0.05, flip="horizontal", brightness=0.1, contrast=0.1
    ),
    "standard": AugmentConfig(
        rotation=0.08, translation=0.1, zoom=0.1, flip="horizontal", crop=0.1, brightness=0.15,
        contrast=0.2, saturation=0.2, hue=0.02, noise=0.01,
    ),
    "heavy": AugmentConfig(
        rotation=0.15, translation=0.15, zoom=0.2, flip="horizontal", crop=0.25, brightness=0.3,
        contrast=0.4, saturation=0.4, hue=0.06, noise=0.03,
    ),
}
FIELDS = tuple(field.name for field in dataclasses.fields(AugmentConfig))
PRESET_KEY = "augment"  # the preset's key in the TOML [augmentation] table


def preset_config(name: str) -> AugmentConfig:
    if name not in PRESETS:
        raise TlcliError(
            f"--augment {name!r} is not a preset. Use one of: {', '.join(PRESETS)}."
        )
    return PRESETS[name]


def overrides_from_flags(**values) -> dict:
    """The strength flags a user actually gave (typer passes None for the others)."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"not augmentation settings: {sorted(unknown)}")
    return {name: value for name, value in values.items() if value is not None}


def resolve_augment(
    preset: str | None, overrides: dict, config_section: dict | None = None, default: str = "none"
) -> AugmentConfig:
    """Settings from a preset, then the TOML [augmentation] table, then command-line flags.

    `preset` is the --augment flag (None when not given); the table may name a preset too
    (`augment = "light"`), and `default` applies when neither does.
    """
    section = dict(config_section or {})
    section_preset = section.pop(PRESET_KEY, None)
    unknown = sorted(set(section) - set(FIELDS))
    if unknown:
        raise TlcliError(
            f"[augmentation] has unknown key(s) {', '.join(unknown)}. "
            f"Known keys: {PRESET_KEY}, {', '.join(FIELDS)}."
        )
    base = preset_config(preset or section_preset or default)
    return dataclasses.replace(base, **{**section, **overrides})


def augmentation_from_options(
    preset: str | None, flags: dict, config_path=None, default: str = "none"
) -> AugmentConfig:
    """Settings from parsed command-line values: --augment, the strength flags, --config FILE."""
    from tlcli.settings import check_tables, load_toml, table

    section = None
    if config_path:
        document = load_toml(config_path)
        check_tables(document, ("augmentation",), (), f"--config {config_path}")
        section = table(document, "augmentation", config_path)
    return resolve_augment(preset, overrides_from_flags(**flags), section, default)


def describe(config: AugmentConfig) -> str:
    """One line naming the techniques that are on, e.g. `rotation 0.1, flip horizontal`."""
    if config.is_identity:
        return "no augmentation"
    parts = []
    for name in FIELDS:
        value = getattr(config, name)
        if name == "flip" and value != "none":
            parts.append(f"flip {value}")
        elif name != "flip" and value > 0:
            parts.append(f"{name} {value:g}")
    return ", ".join(parts)
