"""Resolved settings for training and fine-tuning: validated once, written to the run directory.

A TOML file (`--config FILE.toml`) may supply any option under the same name (dashes or
underscores); options given on the command line override it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.errors import TlcliError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced")
POOLINGS = ("avg", "max", "flatten")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid")


def load_toml(path: Path) -> dict:
    """Read a TOML settings file; keys may use dashes or underscores."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise TlcliError(f"--config {path} {what}. Pass a TOML settings file.")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TlcliError(f"--config {path} is not valid TOML ({error}). Fix the file.") from None
    return _normalise_keys(document)


def table(document: dict, name: str, path: Path | None = None) -> dict:
    """One `[name]` table of a loaded file ({} when absent)."""
    section = document.get(name, {})
    if not isinstance(section, dict):
        where = f"--config {path}: " if path else ""
        raise TlcliError(f"{where}{name} must be a [{name}] table, not {section!r}.")
    return section


def _normalise_keys(document: dict) -> dict:
    return {
        key.replace("-", "_"): _normalise_keys(value) if isinstance(value, dict) else value
        for key, value in document.items()
    }


def given_on_command_line(context) -> set[str]:
    """Names of the parameters the user typed (not defaults), from a typer context.

    Compared by name: Typer carries its own copy of click, whose ParameterSource is another enum.
    """
    defaults = ("DEFAULT", "DEFAULT_MAP")
    return {
        name for name in context.params
        if getattr(context.get_parameter_source(name), "name", "DEFAULT") not in defaults
    }


def merge_settings(given: dict, explicit: set[str], file_settings: dict, allowed: set[str]) -> dict:
    """Command-line values where given explicitly, else the file's, else the defaults."""
    unknown = sorted(key for key, value in file_settings.items() if key not in allowed and not isinstance(value, dict))
    if unknown:
        raise TlcliError(
            f"Unknown setting(s) in the config file: {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(allowed))}."
        )
    merged = dict(given)
    for key, value in file_settings.items():
        if key in allowed and key not in explicit:
            merged[key] = value
    return merged


def command_settings(context, values: dict, exclude: set[str], renamed: dict[str, str], config_path,
                     section: str | None = None) -> dict:
    """A command's settings: its option values (named as the config dataclasses name them),
    with a --config file supplying whatever was not typed on the command line."""
    settings = {renamed.get(key, key): value for key, value in values.items() if key not in exclude}
    if config_path is None:
        return settings
    explicit = {renamed.get(name, name) for name in given_on_command_line(context)}
    document = load_toml(config_path)
    if section and isinstance(document.get(section), dict):
        document = document[section]
    return merge_settings(settings, explicit, document, set(settings))


def parse_dense(value) -> tuple[int, ...]:
    """`--dense 512,128` (or a TOML list) -> (512, 128); empty for none."""
    if value in (None, "", "none", 0):
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        units = tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise TlcliError(f"--dense {value!r} is not a list of layer sizes. Use e.g. --dense 256 or --dense 512,128.") from None
    if any(unit <= 0 for unit in units):
        raise TlcliError(f"--dense {value!r}: layer sizes must be positive. Use e.g. --dense 256.")
    return units


def _choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise TlcliError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(choices)}.")
    return value


_NUMBERS = {"int": (int, "a whole number"), "float": ((int, float), "a number")}


def _check_numbers(settings) -> None:
    """Refuse a number setting of another kind (a --config file may hold any), before it is used."""
    for item in dataclasses.fields(settings):
        kinds, expected = _NUMBERS.get(item.type, (object, ""))
        value = getattr(settings, item.name)
        if not isinstance(value, kinds) or (isinstance(value, bool) and item.type in _NUMBERS):
            flag = "--" + item.name.replace("_", "-")
            raise TlcliError(f"{flag} {value!r} is not {expected}. Use {expected}, e.g. {flag} {item.default}.")


def _at_least(name: str, value, minimum, inclusive=True) -> None:
    if value < minimum or (not inclusive and value == minimum):
        relation = "at least" if inclusive else "more than"
        raise TlcliError(f"--{name.replace('_', '-')} {value} is out of range: it must be {relation} {minimum}.")


@dataclass(frozen=True)
class FitConfig:
    """How to fit: optimiser, schedule, regularisation, stopping. Shared by train and finetune."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    epochs: int = 10
    batch_size: int = 32
    label_smoothing: float = 0.0
    class_weight: str = "none"
    early_stopping: int = 5  # patience in epochs on val_loss; 0 turns it off
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        _check_numbers(self)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _at_least("learning_rate", self.learning_rate, 0, inclusive=False)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("early_stopping", self.early_stopping, 0)
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("momentum", self.momentum, 0)
        if not 0 <= self.label_smoothing < 1:
            raise TlcliError(f"--label-smoothing {self.label_smoothing} is out of range. Use a value in [0, 1).")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `tlcli train` needs, resolved and validated."""

    data: Path
    model: str
    out: Path | None = None
    weights: str = "imagenet"
    image_size: int | None = None
    pooling: str = "avg"
    dense: tuple[int, ...] = ()
    activation: str = "relu"
    dropout: float = 0.0
    val_split: float = 0.2
    test_split: float = 0.0
    cache_features: bool = True
    strict: bool = False
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self):
        from tlcli.backbones import get_backbone

        _check_numbers(self)
        get_backbone(self.model)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("activation", self.activation, ACTIVATIONS)
        if not 0 <= self.dropout < 1:
            raise TlcliError(f"--dropout {self.dropout} is out of range. Use a value in [0, 1).")

    def to_dict(self) -> dict:
        document = dataclasses.asdict(self)
        document.update(document.pop("fit"))
        return document


def split_fit_settings(settings: dict) -> tuple[dict, FitConfig]:
    """Separate FitConfig's fields from the rest of a flat settings mapping."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    fit = FitConfig(**{key: value for key, value in settings.items() if key in names})
    return {key: value for key, value in settings.items() if key not in names}, fit
