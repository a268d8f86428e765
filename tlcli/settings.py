"""Settings files and settings' types: reading TOML, refusing unknown tables and wrong-typed
values with the same messages as the command line."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from tlcli.errors import TlcliError
from tlcli.storage import Location, Url, check_readable, is_url, location


@dataclass(frozen=True)
class LoadedConfig:
    """A --config file once its values are the options' defaults: what the command and its workflow read of it."""

    path: Location
    source: str  # where its settings are, for messages: `--config FILE` or `--config FILE [finetune]`
    settings: dict  # every setting there
    others: dict = field(default_factory=dict)  # those that name no option of the command
    tables: dict = field(default_factory=dict)  # the tables the command reads itself

    def check_known(self, known) -> None:
        check_known(self.settings, known, self.source)


def load_toml(path: Location, option: str = "--config") -> dict:
    """Read a TOML file (a path or a URL) given with `option`; keys may use dashes or underscores."""
    path = location(path)
    check_readable(path, option)
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


def check_tables(document: dict, tables, settings, source: str) -> None:
    """Refuse a table that the command does not read (a misspelt [augmentation] would be
    ignored without a word), as unknown settings are refused. `settings` may hold inline tables."""
    unknown = [key for key, value in document.items()
               if isinstance(value, dict) and key not in tables and key not in settings]
    if unknown:
        fix = (f"Known tables: {', '.join(f'[{name}]' for name in tables)}; other settings go at the top "
               "of the file, before any table." if tables else "It holds settings (key = value), not tables.")
        raise TlcliError(f"Unknown table [{unknown[0]}] in {source}. {fix}")


def check_known(settings, known, source: str) -> None:
    """Refuse a setting that the command does not read, naming those it does."""
    unknown = sorted(key for key in settings if key not in known)
    if unknown:
        raise TlcliError(f"Unknown setting(s) in {source}: {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")


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
        return isinstance(value, (str, Path, Url))
    if kind is str or kind is bool:
        return isinstance(value, kind)
    return is_number(value) and (kind is float or isinstance(value, int))


def check_types(config) -> None:
    """Refuse a setting of the wrong type, naming it, and store numbers, paths and lists canonically.

    Only a settings file can give a wrong type (the command line converts its own), so the
    message shows the value as TOML writes it and how to write it instead.
    """
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    for name, (kind, optional, many) in _setting_kinds(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        check_value(option_name(name), name, value, (kind, optional, many), defaults[name])
        value = tuple(_canonical(item, kind) for item in value) if many else _canonical(value, kind)
        for item in value if many else (value,):
            _check_range(name, item)
        object.__setattr__(config, name, value)


def check_value(option: str, name: str, value, kinds: tuple[type, bool, bool], example=None) -> None:
    """Refuse a value of another kind than a setting's (`setting_kind`), or a number that is not
    finite: `--epochs "two" is not a whole number. In the config file, write e.g. epochs = 10.`"""
    kind, _, many = kinds
    items = value if many and isinstance(value, (list, tuple)) else (value,)
    if (many and not isinstance(value, (list, tuple))) or not all(is_kind(item, kind) for item in items):
        raise wrong_type(option, name, value, "a list" if many else EXPECTED[kind], example)
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise wrong_type(option, name, item, "a finite number", example)


def wrong_type(option: str, name: str, value, expected: str, example=None) -> TlcliError:
    example = _EXAMPLES.get(name, example)
    shown = example not in (None, dataclasses.MISSING)
    fix = f" In the config file, write e.g. {name} = {_toml(example)}." if shown else ""
    return TlcliError(f"{option} {_toml(value)} is not {expected}.{fix}")


# Whole-number settings whose range is the library's: NumPy and TensorFlow seeds are 32-bit unsigned.
_RANGES = {"seed": (0, 2**32 - 1)}


def _check_range(name: str, value) -> None:
    """Refuse a setting outside its range (_RANGES)."""
    low, high = _RANGES.get(name, (None, None))
    if low is not None and not low <= value <= high:
        raise TlcliError(f"{option_name(name)} {value} is out of range: it must be from {low} to {high}.")


def setting_kind(hint) -> tuple[type, bool, bool] | None:
    """(kind, may be None, is a list of that kind) of a setting typed `hint` (its `Annotated`
    metadata aside), or None when it is of no kind in EXPECTED."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    arguments = typing.get_args(hint)
    optional = type(None) in arguments
    if optional:
        hint = next(argument for argument in arguments if argument is not type(None))
    many = typing.get_origin(hint) in (tuple, list)
    if many:
        hint = typing.get_args(hint)[0]
    return (hint, optional, many) if hint in EXPECTED else None


@functools.cache
def _setting_kinds(cls) -> dict[str, tuple[type, bool, bool]]:
    """`setting_kind` of each plain-valued field of a settings dataclass."""
    kinds = {name: setting_kind(hint) for name, hint in typing.get_type_hints(cls).items()}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def _canonical(value, kind):
    if kind is Path:  # a URL stays one (tlcli.storage)
        return value if isinstance(value, Url) else Url(value) if is_url(value) else Path(value)
    return float(value) if kind is float else value


def _toml(value) -> str:
    """A value as a TOML file writes it (JSON's strings, numbers, lists and booleans are TOML's)."""
    return json.dumps(value, default=str)


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise TlcliError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(choices)}.")
    return value


def check_at_least(name: str, value, minimum, inclusive=True) -> None:
    if value < minimum or (not inclusive and value == minimum):
        relation = "at least" if inclusive else "more than"
        raise TlcliError(f"--{name.replace('_', '-')} {value} is out of range: it must be {relation} {minimum}.")
