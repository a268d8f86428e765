"""Resolved settings for training and fine-tuning: validated once, written to the run directory.

A TOML file (`--config FILE.toml`) may supply any option under the same name (dashes or
underscores); options given on the command line override it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.errors import TlcliError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced")
POOLINGS = ("avg", "max", "flatten")
HEAD_SOLVERS = ("auto", "lbfgs", "gradient")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid")


def load_toml(path: Path, option: str = "--config") -> dict:
    """Read a TOML file given with `option`; keys may use dashes or underscores."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise TlcliError(f"{option} {path} {what}. Pass a TOML file.")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TlcliError(f"{option} {path} is not valid TOML ({error}). Fix the file.") from None
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


def merge_settings(given: dict, explicit: set[str], file_settings: dict, allowed: set[str],
                   tables=(), source: str = "the config file") -> dict:
    """Command-line values where given explicitly, else the file's, else the defaults.

    `tables` are the tables of the file that the command reads elsewhere; any other is refused.
    """
    check_tables(file_settings, tables, allowed, source)
    unknown = sorted(key for key, value in file_settings.items() if key not in allowed and not isinstance(value, dict))
    if unknown:
        raise TlcliError(
            f"Unknown setting(s) in {source}: {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(allowed))}."
        )
    merged = dict(given)
    for key, value in file_settings.items():
        if key in allowed and key not in explicit:
            merged[key] = value
    return merged


def command_settings(context, values: dict, exclude: set[str], renamed: dict[str, str], config_path,
                     tables=(), section: str | None = None) -> dict:
    """A command's settings: its option values (named as the config dataclasses name them),
    with a --config file supplying whatever was not typed on the command line.

    The file's settings are at its top, or in the `section` table when it has one; `tables`
    are the tables the command reads elsewhere.
    """
    settings = {renamed.get(key, key): value for key, value in values.items() if key not in exclude}
    if config_path is None:
        return settings
    explicit = {renamed.get(name, name) for name in given_on_command_line(context)}
    document, source = load_toml(config_path), f"--config {config_path}"
    tables = (*tables, section) if section else tables
    if section in document:
        check_tables(document, tables, set(settings), source)
        document, source, tables = table(document, section, config_path), f"{source} [{section}]", ()
    return merge_settings(settings, explicit, document, set(settings), tables, source)


def check_tables(document: dict, tables, settings, source: str) -> None:
    """Refuse a table that the command does not read (a misspelt [augmentation] would be
    ignored without a word), as unknown settings are refused. `settings` may hold inline tables."""
    unknown = [key for key, value in document.items()
               if isinstance(value, dict) and key not in tables and key not in settings]
    if unknown:
        fix = (f"Known tables: {', '.join(f'[{name}]' for name in tables)}; other settings go at the top "
               "of the file, before any table." if tables else "It holds settings (key = value), not tables.")
        raise TlcliError(f"Unknown table [{unknown[0]}] in {source}. {fix}")


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


# What a value of each kind of setting is, in error messages.
EXPECTED = {str: "a name", int: "a whole number", float: "a number", bool: "true or false", Path: "a path"}
# Examples for settings whose default shows none.
_EXAMPLES = {"model": "resnet50", "image_size": 224, "epochs": 10, "early_stopping": 5, "out": "runs/my-run",
             "data": "data", "dense": [256], "stages": ["block5:3:1e-5"], "trials": 10}
_OPTIONS = {"stages": "--stage", "train_batch_norm": "--train-bn"}  # where the option is not the name


def option_name(setting: str) -> str:
    """The command-line option of a setting: `learning_rate` -> `--learning-rate`."""
    return _OPTIONS.get(setting, "--" + setting.replace("_", "-"))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_kind(value, kind) -> bool:
    """Whether a value (from TOML, say) is of a setting's kind; a bool is not a number."""
    if kind is Path:
        return isinstance(value, (str, Path))
    if kind is str or kind is bool:
        return isinstance(value, kind)
    return is_number(value) and (kind is float or isinstance(value, int))


def check_types(config) -> None:
    """Refuse a setting of the wrong type, naming it, and store numbers, paths and lists canonically.

    Only a settings file can give a wrong type (the command line converts its own), so the
    message shows the value as TOML writes it and how to write it instead.
    """
    for name, (kind, optional, many) in _setting_kinds(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if many:
            if not isinstance(value, (list, tuple)) or not all(is_kind(item, kind) for item in value):
                _wrong_type(config, name, value, "a list")
            value = tuple(_canonical(item, kind) for item in value)
        elif is_kind(value, kind):
            value = _canonical(value, kind)
        else:
            _wrong_type(config, name, value, EXPECTED[kind])
        object.__setattr__(config, name, value)


@functools.cache
def _setting_kinds(cls) -> dict[str, tuple[type, bool, bool]]:
    """(kind, may be None, is a tuple of that kind) of each plain-valued field of a settings dataclass."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        arguments = typing.get_args(hint)
        optional = type(None) in arguments
        if optional:
            hint = next(argument for argument in arguments if argument is not type(None))
        many = typing.get_origin(hint) is tuple
        if many:
            hint = typing.get_args(hint)[0]
        if hint in EXPECTED:
            kinds[name] = (hint, optional, many)
    return kinds


def _canonical(value, kind):
    return float(value) if kind is float else Path(value) if kind is Path else value


def _wrong_type(config, name: str, value, expected: str):
    example = _EXAMPLES.get(name, {f.name: f.default for f in dataclasses.fields(config)}.get(name))
    shown = example not in (None, dataclasses.MISSING)
    fix = f" In the config file, write e.g. {name} = {_toml(example)}." if shown else ""
    raise TlcliError(f"{option_name(name)} {_toml(value)} is not {expected}.{fix}")


def _toml(value) -> str:
    """A value as a TOML file writes it (JSON's strings, numbers, lists and booleans are TOML's)."""
    return json.dumps(value, default=str)


def _choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise TlcliError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(choices)}.")
    return value


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
    epochs: int | None = None  # None: enough epochs for about 1,000 optimiser steps (training.fit_length)
    batch_size: int = 32
    label_smoothing: float = 0.0
    class_weight: str = "none"
    early_stopping: int | None = None  # patience in epochs on val_loss; 0 turns it off; None: automatic
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_types(self)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _at_least("learning_rate", self.learning_rate, 0, inclusive=False)
        if self.epochs is not None:
            _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        if self.early_stopping is not None:
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
    head_solver: str = "auto"  # auto: solve a linear head on cached features when its settings allow
    strict: bool = False
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self):
        from tlcli.backbones import get_backbone

        check_types(self)
        get_backbone(self.model)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("head_solver", self.head_solver, HEAD_SOLVERS)
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
