"""A command's settings: the options typed on its command line over those of its --config file."""

from __future__ import annotations

from tlcli.errors import TlcliError
from tlcli.settings import check_tables, load_toml, table


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
