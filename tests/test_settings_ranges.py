"""Numbers that no setting means: nan and infinity in any float option or config file, seeds
outside 32 bits, and a stage's learning rate; each is one line, before any work."""

from __future__ import annotations

import pytest

from helpers import TINY_TRAIN, runner
from tlcli.cli import app


def one_line(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("option", ["--learning-rate", "--weight-decay", "--val-split"])
def test_a_float_option_that_is_not_finite_is_refused_by_name(colour_dataset, tmp_path, option, value):
    result = runner.invoke(app, ["train", str(colour_dataset), *map(str, TINY_TRAIN), option, value,
                                 "--out", str(tmp_path / "run")], terminal_width=400)
    assert one_line(result).startswith(f"Error: {option} {float(value)} is not a finite number")
    assert not (tmp_path / "run").exists()


def test_a_config_file_number_that_is_not_finite_is_refused_by_name(colour_dataset, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("learning_rate = nan\n")
    result = runner.invoke(app, ["train", str(colour_dataset), *map(str, TINY_TRAIN), "--config", str(config),
                                 "--out", str(tmp_path / "run")], terminal_width=400)
    assert "--learning-rate NaN is not a finite number. In the config file, write e.g. learning_rate = 0.001." in one_line(result)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_outside_32_bits_is_one_line(colour_dataset, tmp_path, seed):
    result = runner.invoke(app, ["train", str(colour_dataset), *map(str, TINY_TRAIN), "--seed", seed,
                                 "--out", str(tmp_path / "run")], terminal_width=400)
    assert one_line(result) == f"Error: --seed {seed} is out of range: it must be from 0 to 4294967295."


@pytest.mark.parametrize("stage", ["block3:1:nan", "block3:1:inf"])
def test_a_stage_rate_that_is_not_finite_is_one_line(solved_run, tmp_path, stage):
    result = runner.invoke(app, ["finetune", str(solved_run), "--stage", stage, "--out", str(tmp_path / "ft")],
                           terminal_width=400)
    assert "learning rate must be positive and finite" in one_line(result)
