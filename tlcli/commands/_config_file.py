"""A command's --config file: its values become the defaults of the command's options (Click's
`default_map`) before the command line is parsed, so they are converted and checked as typed
options are, and whatever is typed wins."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from tlcli.commands._errors import one_line_errors
from tlcli.errors import TlcliError
from tlcli.settings import LoadedConfig, check_known, check_tables, check_value, load_toml, setting_kind, table
from tlcli.storage import Location, location

CONFIG_HELP = ("TOML settings file: any option by name, augmentation in an \\[augmentation] table; the command "
               "line overrides it.")


def given_on_command_line(context) -> set[str]:
    """Names of the parameters the user typed (not defaults, nor a --config file's), from a typer context.

    Compared by name: Typer carries its own copy of click, whose ParameterSource is another enum.
    """
    defaults = ("DEFAULT", "DEFAULT_MAP")
    return {
        name for name in context.params
        if getattr(context.get_parameter_source(name), "name", "DEFAULT") not in defaults
    }


@dataclass(frozen=True)
class ConfigFile:
    """What a command's --config file may hold.

    Its top sets any option of the command except those in `exclude` (names, or groups of
    options) and those of its tables. `tables` names each table the file may hold: with the group
    (or names) of the options it sets, or None for a table that the command reads itself. With
    `section`, a [section] table, when the file has one, holds the settings instead of the top.
    With `others`, settings at the top that name no option go to the command, which checks them.
    `forms` turn a value as TOML writes it into the option's (a list of sizes into --dense's text).
    """

    exclude: tuple = ()
    tables: dict = field(default_factory=dict)
    section: str | None = None
    top: bool = True
    others: bool = False
    forms: dict = field(default_factory=dict)

    def read(self, context: typer.Context, path: Optional[Location]) -> LoadedConfig | None:
        """--config's callback. Click processes the options typed on the command line first, in the order
        typed, then the others: so this runs before every option that can take a default from the file."""
        if path is None or context.resilient_parsing:
            return None
        with one_line_errors():
            options = {parameter.name: parameter for parameter in context.command.params
                       if parameter.param_type_name == "option" and parameter.name != "config"}
            loaded, defaults = self._load(path, options)
        hints = typing.get_type_hints(context.command.callback, include_extras=True)
        context.default_map = {**(context.default_map or {}),
                               **{key: self._default(options[key], hints[key], value) for key, value in defaults.items()}}
        return loaded

    def _load(self, path: Location, options: dict) -> tuple[LoadedConfig, dict]:
        """The file's settings for the command, and the option defaults they give."""
        tabled = {name: None if group is None else _names(group) for name, group in self.tables.items()}
        top = set(options) - _names(*self.exclude) - set().union(*filter(None, tabled.values())) if self.top else set()
        document, source, tables = load_toml(path), f"--config {path}", tuple(self.tables)
        if self.section in document:
            check_tables(document, (self.section,), top, source)
            document, source, tables = table(document, self.section, path), f"{source} [{self.section}]", ()
        elif self.section:
            tables += (self.section,)
        check_tables(document, tables, top, source)
        settings = {key: value for key, value in document.items() if key not in tables} if self.top else {}
        if not self.others:
            check_known(settings, top, source)
        defaults = {key: value for key, value in settings.items() if key in top}
        for name, names in tabled.items():
            if names is not None and name in tables:
                values = table(document, name, path)
                check_tables(values, (), names, f"{source} [{name}]")
                check_known(values, names, f"{source} [{name}]")
                defaults.update(values)
        others = {key: value for key, value in settings.items() if key not in top}
        read_by_command = {name: document[name] for name, names in tabled.items() if names is None and name in document}
        return LoadedConfig(path, source, settings, others, read_by_command), defaults

    def _default(self, option, hint, value):
        """An option's default from the file, checked when the option takes it (in the options' order,
        and never when the command line gives the option instead): Click calls a callable default."""

        def checked():
            with one_line_errors():
                return self._option_value(option, hint, value)

        return checked

    def _option_value(self, option, hint, value):
        """A file's value for an option, refused where the command line would refuse it, in one line:
        of another kind (Click would read "3" or 2.5 as a whole number), or out of the option's range."""
        name = next(declared for declared in option.opts if declared.startswith("--"))
        if option.name in self.forms:
            value = self.forms[option.name](value)
        kinds = setting_kind(hint)
        if kinds is not None:
            check_value(name, option.name, value, kinds, option.default)
        for metadata in typing.get_args(hint)[1:]:
            _check_bounds(name, value, getattr(metadata, "min", None), getattr(metadata, "max", None))
        return value


def config_option(help: str = CONFIG_HELP, rich_help_panel: str | None = "Run", **reading):
    """The --config option of a command whose file holds what `ConfigFile(**reading)` says."""
    return Annotated[Optional[LoadedConfig], typer.Option(
        "--config", parser=location, callback=ConfigFile(**reading).read, metavar="PATH", help=help,
        show_default=False, rich_help_panel=rich_help_panel)]


def _names(*items) -> set[str]:
    """Option names, from names and groups of options."""
    return {name for item in items
            for name in ((item,) if isinstance(item, str) else item if isinstance(item, tuple)
                         else (field.name for field in dataclasses.fields(item)))}


def _check_bounds(option: str, value, low, high) -> None:
    if isinstance(value, (int, float)) and ((low is not None and value < low) or (high is not None and value > high)):
        bound = (f"from {low} to {high}" if low is not None and high is not None
                 else f"at least {low}" if low is not None else f"at most {high}")
        raise TlcliError(f"{option} {value} is out of range: it must be {bound}.")
