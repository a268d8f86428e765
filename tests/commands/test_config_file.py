"""A command's --config file (`tlcli.commands._config_file`): its values are the defaults of the options,
so what is typed on the command line wins over the file, and the file over the defaults; a setting or
table the command does not read is refused, and a value is checked when its option takes it."""

from __future__ import annotations

import pytest

from helpers import one_line_error, runner
from tlcli.cli import app


@pytest.mark.parametrize("command, text, message", [
    ("train", "[trian]\nepochs = 2\n",
     "Unknown table [trian] in --config {config}. Known tables: [augmentation]; other settings go at the top"),
    ("train", 'epochs = 2\n[augmentation]\nflip = "none"\n[spcae]\ndropout = [0.1]\n',
     "Unknown table [spcae] in --config {config}. Known tables: [augmentation];"),
    ("augment", '[augmentaton]\nflip = "none"\n', "Unknown table [augmentaton] in --config {config}."),
    ("finetune", '[space]\nflip = "none"\n', "Unknown table [space] in --config {config}. Known tables: [augmentation], [finetune];"),
    ("finetune", "[finetune]\nbatch_size = 8\n[finetune.stage]\nepochs = 1\n",
     "Unknown table [stage] in --config {config} [finetune]. It holds settings (key = value), not tables."),
    ("tune", "[spcae]\nlearning_rate = [0.1]\n", "Unknown table [spcae] in --config {config}. Known tables: [tune], [space], [augmentation];"),
    ("tune", '[tune]\nsearch = "grid"\n[tune.grid]\ntrials = 1\n', "Unknown table [grid] in --config {config} [tune]."),
])
def test_a_table_the_command_does_not_read_is_aone_line_error(flat_dataset, tmp_path, command, text, message):
    config, out = tmp_path / "settings.toml", tmp_path / "out"
    config.write_text(text)
    target = {"train": [flat_dataset], "augment": [flat_dataset], "finetune": [tmp_path / "no-run"],
              "tune": [flat_dataset, "--model", "tinynet"]}[command]
    result = runner.invoke(app, [command, *map(str, target), "--config", str(config), "--out", str(out)])
    assert message.format(config=config) in one_line_error(result)
    assert not out.exists()


def test_the_command_line_overrides_the_file_and_the_file_the_defaults(flat_dataset, tmp_path):
    """Shown by the checks the settings fail, before any work: the file's optimizer is replaced by
    the typed one, its batch size (not typed) is the one checked."""
    config, out = tmp_path / "settings.toml", tmp_path / "run"
    config.write_text('optimizer = "newton"\nbatch-size = 0\n')
    arguments = ["train", str(flat_dataset), "--model", "tinynet", "--config", str(config), "--out", str(out)]
    assert "--optimizer 'newton' is not one of" in one_line_error(runner.invoke(app, arguments))
    message = one_line_error(runner.invoke(app, [*arguments, "--optimizer", "sgd"]))
    assert message == "Error: --batch-size 0 is out of range: it must be at least 1."
    message = one_line_error(runner.invoke(app, [*arguments, "--optimizer", "sgd", "--batch-size", "8",
                                                  "--label-smoothing", "1"]))
    assert message.startswith("Error: --label-smoothing 1.0 is out of range")
    assert not out.exists()


def test_a_setting_the_command_does_not_know_is_refused_with_the_known_ones(flat_dataset, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text("epochs = 2\nlearning_rat = 0.1\nstages = []\n")
    result = runner.invoke(app, ["train", str(flat_dataset), "--config", str(config), "--out", str(tmp_path / "run")])
    message = one_line_error(result)
    assert message.startswith(f"Error: Unknown setting(s) in --config {config}: learning_rat, stages. Known: ")
    assert "learning_rate" in message and "epochs" in message


def test_a_commands_own_table_holds_its_settings_and_the_top_of_the_file_is_then_ignored(tmp_path, solved_run):
    """finetune reads [finetune] when the file has one (a train's settings may sit at the top)."""
    config = tmp_path / "settings.toml"
    config.write_text('model = "tinynet"\n[finetune]\nbatch_size = 0\n')
    result = runner.invoke(app, ["finetune", str(solved_run), "--config", str(config), "--out", str(tmp_path / "ft")])
    assert one_line_error(result) == "Error: --batch-size 0 is out of range: it must be at least 1."
    assert not (tmp_path / "ft").exists()


def test_a_file_value_that_the_command_line_replaces_is_never_checked(flat_dataset, tmp_path):
    config, out = tmp_path / "settings.toml", tmp_path / "run"
    config.write_text('epochs = "two"\nbatch_size = 0\n')
    result = runner.invoke(app, ["train", str(flat_dataset), "--config", str(config), "--epochs", "1", "--batch-size",
                                 "8", "--label-smoothing", "1", "--out", str(out)])
    assert one_line_error(result).startswith("Error: --label-smoothing 1.0 is out of range")
    assert not out.exists()


@pytest.mark.parametrize("command, text, message", [
    ("train", "[augmentation]\ntilt = 0.1\n",
     "Unknown setting(s) in --config {config} [augmentation]: tilt. Known: augment, brightness, contrast, crop, flip, "),
    ("train", '[augmentation]\nrotation = "lots"\n', '--rotation "lots" is not a number.'),
    ("augment", "[augmentation]\nzoom = true\n", "--zoom true is not a number."),
    ("finetune", "cache_memory = -1\n", "--cache-memory -1 is out of range: it must be at least 0."),
])
def test_a_bad_value_in_a_table_or_out_of_an_options_range_is_one_line(flat_dataset, tmp_path, command, text, message):
    config, out = tmp_path / "settings.toml", tmp_path / "out"
    config.write_text(text)
    target = tmp_path / "no-run" if command == "finetune" else flat_dataset
    result = runner.invoke(app, [command, str(target), "--config", str(config), "--out", str(out)])
    assert message.format(config=config) in one_line_error(result)
    assert not out.exists()
