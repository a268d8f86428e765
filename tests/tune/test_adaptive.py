"""Bayesian optimisation and hyperband: KerasTuner's oracles propose each trial, tlcli runs it."""

from __future__ import annotations

import json

import pytest
import tomllib

from helpers import invoke
from tlcli.tune.leaderboard import read_leaderboard
from tlcli.tune.space import Range

COMMON = ("--model", "tinynet", "--weights", "none", "--image-size", 32, "--epochs", 2, "--quiet")


def test_the_space_is_kerastuners_and_its_values_come_back_as_tlclis_settings():
    from tlcli.tune.adaptive import hyperparameters, trial_params

    space = {"learning_rate": Range(1e-4, 1e-1, log=True), "batch_size": Range(8, 64, integer=True),
             "dense": [(), (512, 128)], "optimizer": ["adam", "sgd"]}
    found = {parameter.name: parameter for parameter in hyperparameters(space).space}
    assert (found["learning_rate"].min_value, found["learning_rate"].max_value) == (1e-4, 1e-1)
    assert found["learning_rate"].sampling == "log" and found["batch_size"].sampling == "linear"
    assert (found["batch_size"].min_value, found["batch_size"].max_value) == (8, 64)
    assert found["dense"].values == ["none", "512,128"] and found["optimizer"].values == ["adam", "sgd"]
    values = {"learning_rate": 0.00031234567, "batch_size": 17, "dense": "512,128", "optimizer": "sgd",
              "tuner/epochs": 3, "tuner/bracket": 1, "tuner/round": 0}
    assert trial_params(values) == {"learning_rate": 0.0003123, "batch_size": 17, "dense": [512, 128],
                                    "optimizer": "sgd", "epochs": 3}
    assert trial_params({"dense": "none"}) == {"dense": []}


def test_bayesian_search_records_each_trial_and_resumes_without_repeating(colour_dataset, tmp_path):
    # Linear heads, solved at the L2 penalty of each trial's weight decay: a second a trial.
    space = tmp_path / "space.toml"
    space.write_text("weight_decay = {low = 0.0001, high = 0.1, log = true}\n")
    args = ("tune", colour_dataset, *COMMON, "--search", "bayesian", "--space", space, "--out", tmp_path / "bo")
    invoke(*args, "--trials", 2)
    first = read_leaderboard(tmp_path / "bo")
    assert sorted(t["trial"] for t in first) == [1, 2]
    result = invoke(*args, "--trials", 3, "--resume")
    assert "1 run now, 2 earlier" in result.output
    resumed = {t["trial"]: t for t in read_leaderboard(tmp_path / "bo")}
    assert sorted(resumed) == [1, 2, 3]
    for old in first:
        assert resumed[old["trial"]]["seconds"] == old["seconds"] and resumed[old["trial"]]["params"] == old["params"]
    for trial in resumed.values():
        assert 1e-4 <= trial["params"]["weight_decay"] <= 0.1
        assert trial["penalty_C"] == pytest.approx(1 / (2 * 24 * trial["params"]["weight_decay"]))
    settings = tomllib.loads((tmp_path / "bo" / "best.toml").read_text())
    best = json.loads((tmp_path / "bo" / "leaderboard.json").read_text())["trials"][0]["params"]
    assert settings["weight_decay"] == best["weight_decay"]


def test_hyperband_gives_each_trial_its_epochs_up_to_the_budget(colour_dataset, tmp_path):
    """Linear heads, each solved at the L2 penalty its weight decay is (24 training images)."""
    space = tmp_path / "space.toml"
    space.write_text("weight_decay = [0.0001, 0.001, 0.01]\n")
    invoke("tune", colour_dataset, *COMMON[:-3], "--epochs", 3, "--search", "hyperband", "--space", space,
           "--quiet", "--out", tmp_path / "hb")
    trials = read_leaderboard(tmp_path / "hb")
    assert len(trials) >= 3 and {t["params"]["epochs"] for t in trials} == {1, 3}  # one budget a bracket
    for trial in trials:
        assert set(trial["params"]) == {"weight_decay", "epochs"}
        assert trial["penalty_C"] == pytest.approx(1 / (2 * 24 * trial["params"]["weight_decay"]))
    settings = tomllib.loads((tmp_path / "hb" / "best.toml").read_text())
    best = json.loads((tmp_path / "hb" / "leaderboard.json").read_text())["trials"][0]["params"]
    assert (settings["epochs"], settings["weight_decay"]) == (best["epochs"], best["weight_decay"])
