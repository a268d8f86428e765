"""Settings files and settings' types (`tlcli.settings`): a TOML file read from a path or a URL, and
a wrong-typed value refused with the option's name, what it should be and how to write it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import one_line_error, runner
from tlcli.cli import app
from tlcli.errors import TlcliError
from tlcli.settings import check_at_least, check_choice, check_types, load_toml, option_name, table
from tlcli.storage import Url


@pytest.mark.parametrize("setting, message", [
    ('epochs = "two"', '--epochs "two" is not a whole number. In the config file, write e.g. epochs = 10.'),
    ('learning_rate = "abc"', '--learning-rate "abc" is not a number. In the config file, write e.g. learning_rate = 0.001.'),
    ("batch_size = 1.5", "--batch-size 1.5 is not a whole number. In the config file, write e.g. batch_size = 32."),
    ('seed = "x"', '--seed "x" is not a whole number. In the config file, write e.g. seed = 0.'),
    ("model = 7", '--model 7 is not a name. In the config file, write e.g. model = "resnet50".'),
    ("weights = 3", '--weights 3 is not a name. In the config file, write e.g. weights = "imagenet".'),
    ("dropout = [0.1]", "--dropout [0.1] is not a number. In the config file, write e.g. dropout = 0.0."),
    ("cache_features = 1", "--cache-features 1 is not true or false."),
])
def test_wrong_typed_train_settings_in_a_config_file_are_one_line_errors(flat_dataset, tmp_path, setting, message):
    settings = tmp_path / "settings.toml"
    settings.write_text(setting + "\n")
    result = runner.invoke(app, ["train", str(flat_dataset), "--config", str(settings), "--out", str(tmp_path / "run")])
    assert message in one_line_error(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, setting, message", [
    ("finetune", 'stages = "block5:3:1e-4"',
     '--stage "block5:3:1e-4" is not a list. In the config file, write e.g. stages = ["block5:3:1e-5"].'),
    ("finetune", 'train_batch_norm = "yes"', '--train-bn "yes" is not true or false.'),
    ("finetune", 'learning_rate = "small"', '--learning-rate "small" is not a learning rate. Give a positive number'),
    ("finetune", 'learning_rate = true', '--learning-rate true is not a learning rate.'),
    ("tune", "[tune]\ntrials = 2.5", "--trials 2.5 is not a whole number. In the config file, write e.g. trials = 10."),
    ("tune", '[tune]\nobjective = ["val_loss"]', '--objective ["val_loss"] is not a name.'),
    ("tune", 'early_stopping = "3"', '--early-stopping "3" is not a whole number.'),
])
def test_wrong_typed_finetune_and_tune_settings_are_one_line_errors(flat_dataset, tmp_path, command, setting, message):
    settings = tmp_path / "settings.toml"
    settings.write_text(setting + "\n")
    target = [str(tmp_path / "no-run")] if command == "finetune" else [str(flat_dataset), "--model", "tinynet"]
    result = runner.invoke(app, [command, *target, "--config", str(settings), "--out", str(tmp_path / "out")])
    assert message in one_line_error(result)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("config, message", [
    ("missing.toml", "--config {config} does not exist. Pass a TOML file."),
    (".", "--config {config} is a folder. Pass a TOML file."),
    ("broken.toml", "--config {config} is not valid TOML (Expected '=' after a key"),
    ("foo://bucket/settings.toml", "--config {config}: TensorFlow has no file system for foo:// URLs."),
])
def test_a_config_file_that_cannot_be_read_is_one_line(flat_dataset, tmp_path, config, message):
    (tmp_path / "broken.toml").write_text("epochs 2\n")
    path = config if "://" in config else tmp_path / config
    result = runner.invoke(app, ["train", str(flat_dataset), "--config", str(path), "--out", str(tmp_path / "run")],
                           terminal_width=400)
    assert one_line_error(result).startswith("Error: " + message.format(config=path))
    assert not (tmp_path / "run").exists()


def test_a_settings_file_is_read_from_a_url_with_dashes_or_underscores_alike():
    import tensorflow as tf

    url = f"ram://{uuid.uuid4().hex[:8]}/settings.toml"
    with tf.io.gfile.GFile(url, "w") as handle:
        handle.write('learning-rate = 0.01\nbatch_size = 8\n[augmentation]\nflip-mode = "horizontal"\n')
    document = load_toml(url)
    assert document == {"learning_rate": 0.01, "batch_size": 8, "augmentation": {"flip_mode": "horizontal"}}
    assert table(document, "augmentation") == {"flip_mode": "horizontal"} and table(document, "space") == {}
    with pytest.raises(TlcliError, match=r"^--config settings.toml: batch_size must be a \[batch_size\] table, not 8"):
        table(document, "batch_size", Path("settings.toml"))


@dataclass(frozen=True)
class Settings:
    """A settings dataclass as tlcli's configs are: checked once, when made."""

    model: str = "tinynet"
    epochs: int = 10
    learning_rate: float = 0.001
    nesterov: bool = False
    out: Path | None = None
    dense: tuple[int, ...] = ()

    def __post_init__(self):
        check_types(self)


def test_settings_are_stored_canonically_whatever_the_file_wrote():
    settings = Settings(learning_rate=1, out="runs/a", dense=[256, 128])
    assert settings.learning_rate == 1.0 and isinstance(settings.learning_rate, float)
    assert settings.out == Path("runs/a") and settings.dense == (256, 128)
    assert Settings(out="gs://bucket/run").out == Url("gs://bucket/run")  # a URL stays one
    assert Settings(out=None).out is None  # optional


@pytest.mark.parametrize("values, message", [
    ({"epochs": True}, "--epochs true is not a whole number. In the config file, write e.g. epochs = 10."),
    ({"learning_rate": "1e-3"},
     '--learning-rate "1e-3" is not a number. In the config file, write e.g. learning_rate = 0.001.'),
    ({"nesterov": 1}, "--nesterov 1 is not true or false. In the config file, write e.g. nesterov = false."),
    ({"dense": [256, "wide"]}, '--dense [256, "wide"] is not a list. In the config file, write e.g. dense = [256].'),
    ({"out": 3}, "--out 3 is not a path. In the config file, write e.g. out = \"runs/my-run\"."),
])
def test_a_wrong_typed_setting_names_its_option_and_how_to_write_it(values, message):
    with pytest.raises(TlcliError) as raised:
        Settings(**values)
    assert str(raised.value) == message


def test_choices_and_ranges_are_refused_with_the_options_name():
    assert check_choice("head_solver", "lbfgs", ("auto", "lbfgs")) == "lbfgs"
    with pytest.raises(TlcliError, match=r"^--head-solver 'newton' is not one of: auto, lbfgs\.$"):
        check_choice("head_solver", "newton", ("auto", "lbfgs"))
    check_at_least("batch_size", 1, 1)
    with pytest.raises(TlcliError, match=r"^--batch-size 0 is out of range: it must be at least 1\.$"):
        check_at_least("batch_size", 0, 1)
    with pytest.raises(TlcliError, match=r"^--learning-rate 0 is out of range: it must be more than 0\.$"):
        check_at_least("learning_rate", 0, 0, inclusive=False)
    assert [option_name(name) for name in ("learning_rate", "stages", "train_batch_norm")] == [
        "--learning-rate", "--stage", "--train-bn"]
