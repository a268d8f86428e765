"""Fine-tuning: stages, rollback, resume, and one-line errors for bad stages and sources."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import invoke, kill_when, read_history, runner, write_colour_dataset
from tlcli.cli import app
from tlcli.errors import TlcliError
from tlcli.models.backbones import get_backbone
from tlcli.models.saved import load_run_model


@pytest.mark.parametrize(
    "stage, message",
    [
        ("block99:1:1e-4", "'block99' is not a block of vgg16"),
        ("abc:1:x", "epochs must be a whole number"),
        ("block5:0:1e-4", "epochs and learning rate must be positive"),
        ("block5:1", "is not a stage"),
        ("999:1:1e-4", "--stage '999:1:1e-4': 999 is more layers than vgg16 has (19). Unfreeze at most 19,"),
    ],
)
def test_bad_stage_specs_are_one_line_errors(tiny_run, tmp_path, stage, message):
    out = tmp_path / "never"
    result = runner.invoke(app, ["finetune", str(tiny_run), "--stage", stage, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_finetune_refuses_a_folder_that_is_not_a_run_or_other_classes(tiny_run, tmp_path):
    result = runner.invoke(app, ["finetune", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "is not a tlcli run" in result.output
    other = write_colour_dataset(tmp_path / "other", per_split={"train": 2, "val": 1})
    (other / "train" / "red").rename(other / "train" / "crimson")
    (other / "val" / "red").rename(other / "val" / "crimson")
    result = runner.invoke(app, ["finetune", str(tiny_run), "--data", str(other), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "differ from the run's" in result.output
    assert not (tmp_path / "y").exists()
    result = runner.invoke(app, ["finetune", str(tiny_run), "--weight-decay", "0.01", "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "--weight-decay 0.01 does nothing with --optimizer adam" in result.output
    assert not (tmp_path / "z").exists()


def test_finetune_of_an_export_folder_says_it_needs_the_run_directory(tiny_run, tmp_path):
    exported = tmp_path / "exported"
    invoke("export", tiny_run, "--format", "keras", "--no-verify", "--out", exported)
    expected = f"Error: {exported} is an export folder, not a run directory: fine-tuning needs the run's config.json"
    for command in (["finetune", exported], ["tune", "--finetune", exported]):
        result = runner.invoke(app, [*map(str, command), "--out", str(tmp_path / "never")])
        assert result.exit_code == 2 and result.output.startswith(expected), result.output
        assert "Unknown model" not in result.output and not (tmp_path / "never").exists()


def test_stage_parsing_accepts_blocks_counts_shares_and_all():
    from tlcli.training.finetune import parse_stage

    spec = get_backbone("inceptionv3")
    assert str(parse_stage("mixed9:3:1e-4", spec)) == "mixed9:3:0.0001"
    assert parse_stage("30:2:1e-5", spec).unfreeze == "30"
    assert parse_stage("25%:2:1e-5", spec).unfreeze == "25%"
    assert parse_stage("ALL:1:1e-5", spec).unfreeze == "all"
    with pytest.raises(TlcliError):
        parse_stage("150%:1:1e-5", spec)


def test_a_stage_that_ends_worse_is_rolled_back(tiny_run, tmp_path):
    result = invoke("finetune", tiny_run, "--stage", "block5:1:1e-5", "--stage", "all:1:50",
                    "--optimizer", "sgd", "--batch-size", 8, "--early-stopping", 0, "--out", tmp_path / "ft")
    assert "Stage 2 ended worse" in result.output and "rolled back" in result.output
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    rows = read_history(tmp_path / "ft")
    assert [row["stage"] for row in rows] == ["stage1-block5", "stage2-all"]
    assert metrics["val_loss"] == pytest.approx(float(rows[0]["val_loss"]), rel=1e-3)
    source, _ = load_run_model(tiny_run)
    tuned, _ = load_run_model(tmp_path / "ft")
    assert all(layer.trainable is False for layer in tuned.get_layer("vgg16").layers[1:])
    assert source.count_params() == tuned.count_params()


def test_finetune_resumed_after_sigkill_is_the_uninterrupted_fine_tuning(tiny_run, tmp_path):
    def command(out):
        return [sys.executable, "-m", "tlcli", "finetune", str(tiny_run), "--stage", "block5:2:1e-4",
                "--stage", "block4:3:1e-5", "--batch-size", "4", "--early-stopping", "0", "--out", str(out)]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = subprocess.run(command(whole) + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    kill_when(command(killed) + ["--quiet"], lambda: (killed / "history.csv").exists() and len(read_history(killed)) >= 3,
              timeout=180)
    assert 3 <= len(read_history(killed)) < 5  # killed in the second stage
    resumed = subprocess.run(command(killed) + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after stage 1 of 2." in resumed.stderr
    assert "stage1-block5" not in resumed.stderr.split("Resuming")[1]  # the finished stage is not repeated
    rows = read_history(killed)
    assert [(int(r["epoch"]), r["stage"]) for r in rows] == [
        (1, "stage1-block5"), (2, "stage1-block5"), (3, "stage2-block4"), (4, "stage2-block4"), (5, "stage2-block4")]
    assert rows == read_history(whole)
    for ours, theirs in zip(load_run_model(killed)[0].get_weights(), load_run_model(whole)[0].get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_a_stage_on_the_frozen_parts_cached_output_trains_as_the_stage_end_to_end(tiny_run, tmp_path):
    def tune(name, *flags):
        out = tmp_path / name
        invoke("finetune", tiny_run, "--stage", "block4:2:1e-4", "--batch-size", 8, "--early-stopping", 0,
               "--quiet", "--out", out, *flags)
        route = json.loads((out / "metrics.json").read_text())["stage_rates"]["stage1-block4"]["route"]
        return read_history(out), load_run_model(out)[0].get_weights(), route

    plain = tune("plain", "--no-cache-features")
    assert plain[2] == "end to end: --no-cache-features"
    for name, memory in (("in-memory", "2"), ("spilled", "0")):
        rows, weights, route = tune(name, "--cache-memory", memory)
        assert route.startswith("cached: cut at block3_pool")
        assert ("in memory" in route) == (name == "in-memory")
        assert len(rows) == len(plain[0]) == 2
        for ours, theirs in zip(rows, plain[0]):
            for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
                assert float(ours[column]) == pytest.approx(float(theirs[column]), rel=1e-4, abs=1e-6), column
        for ours, theirs in zip(weights, plain[1]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert list(tmp_path.glob("*/.tlcli-cache-*")) == []


def test_a_stage_that_trains_the_whole_backbone_runs_end_to_end_and_says_why(tiny_run, tmp_path):
    invoke("finetune", tiny_run, "--stage", "all:1:1e-6", "--batch-size", 8, "--quiet", "--out", tmp_path / "ft")
    route = json.loads((tmp_path / "ft" / "metrics.json").read_text())["stage_rates"]["stage1-all"]["route"]
    assert route == "end to end: nothing below all is frozen"
