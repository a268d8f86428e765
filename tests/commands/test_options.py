"""Options shared by several commands (`tlcli.commands._options`), defined once: every command that
takes one offers it alike, and --tta-views implies --tta."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import runner
from tlcli.cli import app
from tlcli.commands._options import ViewSetName, chosen_views
from tlcli.models.backbones import BACKBONES
from tlcli.models.tta import DEFAULT_VIEW_SET, VIEW_SETS


def test_tta_views_imply_tta_and_tta_alone_averages_the_default_views():
    assert chosen_views(False, None) is None
    assert chosen_views(True, None) == DEFAULT_VIEW_SET
    for name in VIEW_SETS:
        assert chosen_views(False, ViewSetName(name)) == name == chosen_views(True, ViewSetName(name))


@pytest.mark.parametrize("command", ["train", "tune", "extract", "audit"])
def test_every_command_that_takes_a_backbone_offers_every_one(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # at 80 columns Rich cuts some names short, with an ellipsis
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    words = " ".join(result.output.replace("│", " ").split())  # the help as one line, out of its box
    real = [name for name, spec in BACKBONES.items() if spec.module.startswith("keras")]
    assert f"Backbone: {', '.join(real)}." in words


def test_a_path_argument_expands_home_and_a_url_stays_a_url(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = runner.invoke(app, ["inspect", "~/photos"], terminal_width=400)
    assert result.exit_code == 2 and f"Dataset folder {tmp_path / 'photos'} does not exist" in result.output
    result = runner.invoke(app, ["inspect", "foo://bucket/photos"], terminal_width=400)
    assert result.exit_code == 2 and "foo://bucket/photos: TensorFlow has no file system for foo://" in result.output
    assert not Path("~").exists()
