"""`tlcli lr-find`, and fine-tuning stages at `auto` rates (the range test itself: test_range_test.py)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from helpers import invoke, one_line_error, read_history, runner
from tlcli.cli import app
from tlcli.training.finetune import FALLBACK_RATE


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lr_find_tests_rates_and_leaves_the_run_unchanged(tiny_run, tmp_path):
    before = {path.name: _digest(path) for path in tiny_run.iterdir() if path.is_file()}
    result = invoke("lr-find", tiny_run, "--steps", 30, "--batch-size", 8, "--out", tmp_path / "lr.png", "--json")
    found = json.loads(result.stdout)

    rates = np.asarray(found["rates"])
    assert found["unfreeze"] == "block3" and found["rule"] == "edge" and 5 <= len(rates) <= 30
    np.testing.assert_allclose(rates[1:] / rates[:-1], (1.0 / 1e-7) ** (1 / 29), rtol=1e-6)  # one rate a step
    assert found["stopped"] in ("blew up", "reached the end") and (tmp_path / "lr.png").is_file()
    if found["suggestion"] is not None:
        assert rates[0] < found["suggestion"] < rates[-1]
    assert {path.name: _digest(path) for path in tiny_run.iterdir() if path.is_file()} == before
    assert "Running the range test: the rate grows each step" in result.stderr  # stdout holds the JSON alone


def test_lr_find_stops_when_the_loss_blows_up_and_suggests_below_it(tiny_run, tmp_path):
    # MODEL may be the run's model.keras as well as its directory.
    found = json.loads(invoke("lr-find", tiny_run / "model.keras", "--steps", 40, "--start", 1e-6, "--end", 100.0,
                              "--batch-size", 8, "--out", tmp_path / "lr.png", "--json").stdout)
    assert found["stopped"] == "blew up" and len(found["rates"]) < 40
    smoothed = np.asarray(found["smoothed"])
    assert smoothed[-1] > 4 * smoothed.min() and smoothed[-1] > smoothed[0]
    # The suggestion is a third of a rate at which the loss had risen to three times its lowest.
    rose = int(np.argmin(np.abs(np.asarray(found["rates"]) - 3 * found["suggestion"])))
    assert found["rates"][rose] == pytest.approx(3 * found["suggestion"])
    assert found["losses"][rose] > 3 * max(smoothed[9:rose].min(), 0.05)


def test_lr_find_says_when_the_loss_never_rises(tiny_run, tmp_path):
    # Rates far too small to move anything, on one batch of all 24 images: the loss stays where it is.
    # (On the images themselves, where the tests above read the frozen part's cached output.)
    result = invoke("lr-find", tiny_run, "--steps", 10, "--start", 1e-12, "--end", 1e-11, "--batch-size", 32,
                    "--no-cache-features", "--out", tmp_path / "lr.png")
    assert "The training loss of block3 did not rise to three times its lowest" in result.stdout
    assert "Suggested" not in result.stdout


def test_lr_find_of_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = runner.invoke(app, ["lr-find", str(tmp_path)])
    assert result.exit_code == 2 and "is not a tlcli run" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_rates_that_do_not_grow_from_a_positive_start_are_one_line(tiny_run, tmp_path):
    message = one_line_error(runner.invoke(app, ["lr-find", str(tiny_run), "--start", "1", "--end", "0.5",
                                                 "--out", str(tmp_path / "lr.png")], terminal_width=400))
    assert "--start 1 and --end 0.5: the rates must grow from a positive start" in message
    assert not (tmp_path / "lr.png").exists()


def test_an_auto_stage_trains_at_the_rate_its_range_test_found(tiny_run, tmp_path):
    out = tmp_path / "ft"
    result = invoke("finetune", tiny_run, "--stage", "block3:1:auto", "--batch-size", 8, "--out", out)
    rates = json.loads((out / "metrics.json").read_text())["stage_rates"]

    entry = rates["stage1-block3"]
    assert entry["source"] in ("found, edge rule", "none found: fallback")
    if entry["source"].startswith("none"):
        assert entry["learning_rate"] == FALLBACK_RATE  # the stage's fallback
    assert float(read_history(out)[0]["learning_rate"]) == pytest.approx(entry["learning_rate"], rel=1e-5)
    said = "the range test suggests" if entry["source"].startswith("found") else "the range test's loss never rose"
    assert f"block3: {said}" in result.output and (out / "lr_find_stage1-block3.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["stages"] == ["block3:1:auto"] and config["learning_rate"] == "auto"  # --learning-rate's default


def test_a_given_rate_is_recorded_as_given(finetuned_run):
    out, _ = finetuned_run  # fine-tuned with --stage block3:1:1e-4
    rates = json.loads((out / "metrics.json").read_text())["stage_rates"]
    assert list(rates) == ["stage1-block3"]
    assert rates["stage1-block3"]["learning_rate"] == 1e-4 and rates["stage1-block3"]["source"] == "given"
    assert rates["stage1-block3"]["route"].startswith("cached: cut at block2_pool, 66% of the forward pass below it")
    assert float(read_history(out)[0]["learning_rate"]) == pytest.approx(1e-4)
    assert not list(out.glob("lr_find_*.png"))


def test_auto_is_a_stage_rate_and_a_stage_length():
    from tlcli.models.backbones import get_backbone
    from tlcli.training.finetune import STAGE_EPOCHS, STAGE_STEPS, default_stages, parse_stage

    spec = get_backbone("resnet50")
    assert str(parse_stage("conv5:3:AUTO", spec)) == "conv5:3:auto"
    assert parse_stage("conv5:3:auto", spec).learning_rate is None
    assert [str(stage) for stage in default_stages(spec)] == ["conv5:auto:auto", "all:auto:auto"]
    automatic = parse_stage("all:Auto:1e-4", spec)
    assert automatic.epochs is None and automatic.epochs_for(3) == STAGE_EPOCHS[1]  # a small dataset: capped
    assert automatic.epochs_for(STAGE_STEPS // 10) == 10 and automatic.epochs_for(10 * STAGE_STEPS) == STAGE_EPOCHS[0]
    assert parse_stage("all:7:1e-4", spec).epochs_for(3) == 7


@pytest.mark.slow
def test_the_range_test_on_the_cached_frozen_part_records_the_losses_of_the_images(tiny_run, tmp_path):
    def losses(*flags):
        found = json.loads(invoke("lr-find", tiny_run, "--unfreeze", "block3", "--steps", 12, "--batch-size", 8,
                                  "--out", tmp_path / "lr.png", "--overwrite", "--json", *flags).stdout)
        return np.asarray(found["losses"])

    cached, plain = losses(), losses("--no-cache-features")
    assert len(cached) == len(plain) >= 5
    np.testing.assert_allclose(cached, plain, rtol=1e-4)
