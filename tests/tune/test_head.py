"""The head search (`tlcli tune DATA`): heads fitted on features computed once, and a best.toml
that `tlcli train --config` replays."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
import tomllib

from helpers import invoke, read_history
from tlcli.tune.leaderboard import read_leaderboard


def test_a_grid_runs_every_combination_exactly_once(grid_search):
    tune_dir, output = grid_search
    trials = json.loads((tune_dir / "leaderboard.json").read_text())["trials"]
    expected = [{"dense": list(dense), "learning_rate": rate} for dense, rate in itertools.product([(), (8,)], [0.01, 0.03])]
    assert sorted(json.dumps(t["params"], sort_keys=True) for t in trials) == sorted(json.dumps(p, sort_keys=True) for p in expected)
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    losses = [t["val_loss"] for t in trials]
    assert losses == sorted(losses)
    assert sorted(path.name for path in (tune_dir / "trials").iterdir()) == ["0001", "0002", "0003", "0004"]
    with open(tune_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["trial"] for row in rows] == [str(t["trial"]) for t in trials]
    assert {row["dense"] for row in rows} == {"none", "8"}
    assert "Leaderboard by val_loss" in output and "best.toml" in output


def test_a_linear_trial_is_solved_and_a_hidden_layer_trained(grid_search):
    """The linear head of a trial is solved as `tlcli train` solves it (its penalty recorded,
    no epochs); a head with a hidden layer is trained for the search's epochs."""
    tune_dir, _ = grid_search
    for trial in read_leaderboard(tune_dir):
        if trial["params"]["dense"]:
            assert "penalty_C" not in trial and trial["epochs_run"] == 2 and 1 <= trial["best_epoch"] <= 2
        else:
            assert trial["epochs_run"] is None and trial["penalty_C"] > 0


def test_best_toml_trains_with_tlcli_train_and_reproduces_the_best_trial(grid_search, colour_dataset, tmp_path):
    tune_dir, _ = grid_search
    best = json.loads((tune_dir / "leaderboard.json").read_text())["trials"][0]
    settings = tomllib.loads((tune_dir / "best.toml").read_text())
    assert (settings["model"], settings["weights"], settings["image_size"]) == ("tinynet", "none", 32)
    invoke("train", colour_dataset, "--config", tune_dir / "best.toml", "--out", tmp_path / "run", "--quiet")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["learning_rate"] == best["params"]["learning_rate"]
    assert config["dense"] == best["params"]["dense"]
    assert (config["model"], config["image_size"], config["epochs"], config["optimizer"]) == ("tinynet", 32, 2, "sgd")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_a_trial_is_the_base_settings_with_its_own_values(colour_dataset):
    from tlcli.tune.head import default_space, settings_from, trial_config

    base = settings_from({"model": "tinynet", "weights": "none", "image_size": 32, "dense": "8",
                          "learning_rate": 0.01, "epochs": 3}, colour_dataset)
    trial = trial_config(base, {"dense": [16, 4], "dropout": 0.25, "learning_rate": 0.1, "optimizer": "sgd"})
    assert (trial.dense, trial.dropout, trial.fit.learning_rate, trial.fit.optimizer) == ((16, 4), 0.25, 0.1, "sgd")
    assert (trial.model, trial.image_size, trial.fit.epochs, trial.data) == ("tinynet", 32, 3, colour_dataset)
    assert (base.dense, base.fit.learning_rate) == ((8,), 0.01)  # the base is left as it was
    # The default grid varies what the solved linear head does not read: hidden layers and dropout.
    assert default_space("grid") == {"dense": [(), (256,), (512,)], "dropout": [0.0, 0.3]}


def test_trains_options_reach_every_head_trial_and_best_toml(colour_dataset, tmp_path):
    """tune takes train's options: each trial fits with them (the cosine schedule shows in its
    history, the strategy and batch size in the line on where it runs), and best.toml keeps them."""
    space = tmp_path / "space.toml"
    space.write_text("dense = [[8]]\n")
    result = invoke("tune", colour_dataset, "--model", "tinynet", "--weights", "none", "--image-size", 32,
                    "--search", "grid", "--space", space, "--epochs", 3, "--early-stopping", 0, "--optimizer", "sgd",
                    "--lr", 0.05, "--momentum", 0.5, "--nesterov", "--schedule", "cosine", "--batch-size", 8,
                    "--label-smoothing", 0.1, "--class-weight", "balanced", "--dropout", 0.2, "--activation", "tanh",
                    "--strategy", "one-device", "--out", tmp_path / "search")
    best = tomllib.loads((tmp_path / "search" / "best.toml").read_text())
    given = {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.5, "nesterov": True, "schedule": "cosine",
             "batch_size": 8, "label_smoothing": 0.1, "class_weight": "balanced", "dropout": 0.2, "activation": "tanh",
             "dense": [8], "epochs": 3}
    assert {key: best[key] for key in given} == given
    rates = [float(row["learning_rate"]) for row in read_history(tmp_path / "search" / "trials" / "0001")]
    assert len(rates) == 3 and rates[0] <= 0.05 and rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    assert "Strategy one-device: 1 replica(s)" in result.output and "batch 8 per replica" in result.output


@pytest.mark.parametrize("args, message", [
    (("--augment", "light"), "Augmentation does not go with a head search"),
    (("--rotation", "0.1"), "Augmentation does not go with a head search"),
    (("--strategy", "multi-worker"), "--strategy multi-worker: tlcli tune runs its trials in this one process"),
])
def test_what_a_head_search_cannot_do_is_refused_in_one_line(colour_dataset, tmp_path, args, message):
    result = invoke("tune", colour_dataset, "--model", "tinynet", "--weights", "none", *args,
                    "--out", tmp_path / "out", expect=2)
    assert result.output.strip() == f"Error: {result.output.strip()[7:]}" and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
