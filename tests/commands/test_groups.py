"""Options shared as groups (`tlcli.commands._groups`): a command takes a group as one parameter,
and its user still meets every option of it, named, with its default, help and panel, alike in every
command that takes the group."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
import typer
import typer.main

from helpers import runner
from tlcli.cli import app, reports_errors
from tlcli.commands._groups import Augmentation, Distribution, LabelOptions, MultiLabelOptions, takes_option_groups
from tlcli.distribute.placement import DistributeConfig


def _app(command) -> typer.Typer:
    tool = typer.Typer(add_completion=False)
    tool.command("run")(reports_errors(command))
    tool.command("other")(lambda: None)  # two commands, so that `run` is named on the command line
    return tool


def test_a_group_parameter_is_its_options_on_the_command_line_and_the_group_in_the_command(monkeypatch):
    received = {}

    @takes_option_groups
    def command(size: int = 1, labels: LabelOptions = LabelOptions(), distribution: Distribution = Distribution()):
        received.update(size=size, labels=labels, distribution=distribution)

    monkeypatch.setenv("COLUMNS", "200")
    tool = _app(command)
    shown = runner.invoke(tool, ["run", "--help"]).output
    for option in ("--size", "--labels", "--label-columns", "--allow-outside-paths", "--strategy", "--tpu", "--precision"):
        assert option in shown
    assert "Label file" in shown and "Distribution" in shown  # the options' panels

    result = runner.invoke(tool, ["run", "--size", "3", "--label-columns", "label=tags", "--strategy", "one-device"])
    assert result.exit_code == 0, result.output
    assert received["size"] == 3
    assert received["labels"] == LabelOptions(label_columns="label=tags")
    assert received["distribution"] == Distribution(strategy="one-device")
    assert isinstance(received["distribution"], DistributeConfig)  # the library's own config, checked as it is made


def test_a_group_parameters_default_gives_its_options_defaults(monkeypatch):
    received = {}

    @takes_option_groups
    def command(distribution: Distribution = Distribution(precision="mixed_bfloat16")):
        received["distribution"] = distribution

    monkeypatch.setenv("COLUMNS", "200")
    tool = _app(command)
    assert "[default: mixed_bfloat16]" in runner.invoke(tool, ["run", "--help"]).output
    assert runner.invoke(tool, ["run"]).exit_code == 0
    assert received["distribution"].precision == "mixed_bfloat16"


def test_a_bad_value_of_a_group_is_one_line_naming_its_option():
    @takes_option_groups
    def command(distribution: Distribution = Distribution()):
        pass

    result = runner.invoke(_app(command), ["run", "--strategy", "sideways"])
    assert result.exit_code == 2 and result.output.startswith("Error: --strategy 'sideways' is not one of")


def test_an_option_of_a_group_is_named_in_errors_about_it(flat_dataset, tmp_path):
    """tlcli.cli.option_name reads the command's types: those of a group's options too."""
    result = runner.invoke(app, ["train", str(flat_dataset), "--rotation", "nan", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.startswith("Error: --rotation nan is not a finite number")
    assert not (tmp_path / "run").exists()


def test_an_option_of_a_group_may_not_take_the_name_of_another_parameter():
    def command(labels: str = "", label_file: LabelOptions = LabelOptions()):
        pass

    with pytest.raises(TypeError, match="another parameter"):
        takes_option_groups(command)


def _names(group) -> set[str]:
    return {field.name for field in dataclasses.fields(group)}


def test_every_command_that_offers_an_option_of_a_group_offers_the_whole_group_alike():
    """Enumerated from the app, so that a command is held to it the day it is added."""
    groups = (LabelOptions, MultiLabelOptions, Distribution, Augmentation)
    grouped = set().union(*map(_names, groups))
    shapes = defaultdict(set)
    for name, command in typer.main.get_command(app).commands.items():
        offered = {parameter.name: parameter for parameter in command.params if parameter.name in grouped}
        for option in offered.values():
            shapes[option.name].add((tuple(option.opts), option.help, option.default))
        assert set(offered) == set().union(*(_names(group) for group in groups if _names(group) <= set(offered))), name
    assert all(len(shape) == 1 for shape in shapes.values()), shapes
