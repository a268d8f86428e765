"""Search spaces: read from TOML, checked as the searched command checks its options, and
planned into trials by scikit-learn's grid and sampler."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from helpers import invoke
from tlcli.errors import TlcliError
from tlcli.tune.space import Range, parse_space, plan_trials

COMMON = ("--model", "tinynet", "--weights", "none", "--image-size", 32, "--epochs", 2, "--quiet")
KINDS = {"learning_rate": float, "batch_size": int, "optimizer": str}


def as_given(key, value):
    """A search's own check that accepts every value (the space's reading is under test)."""
    return value


def test_random_trials_are_a_seeded_prefix():
    space = {"learning_rate": Range(1e-4, 1e-1, log=True), "dense": [(), (64,)], "batch_size": Range(8, 64, integer=True)}
    five = plan_trials(space, "random", 5, seed=1)
    assert plan_trials(space, "random", 3, seed=1) == five[:3]
    assert plan_trials(space, "random", 5, seed=2) != five
    assert all(1e-4 <= t["learning_rate"] <= 1e-1 and isinstance(t["batch_size"], int) for t in five)
    lists = {"learning_rate": [0.1, 0.01, 0.001], "dropout": [0.0, 0.5]}
    every = plan_trials(lists, "random", 6, seed=1)
    assert plan_trials(lists, "random", 2, seed=1) == every[:2]
    assert len({json.dumps(t, sort_keys=True) for t in every}) == 6  # without replacement


def test_a_grid_plans_every_combination_once():
    space = {"dense": [(), (8,), (16, 4)], "dropout": [0.0, 0.5], "optimizer": ["adam", "sgd"]}
    planned = plan_trials(space, "grid", None, seed=0)
    expected = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    assert len(planned) == 12
    assert sorted(json.dumps(t, sort_keys=True) for t in planned) == sorted(
        json.dumps({**t, "dense": list(t["dense"])}, sort_keys=True) for t in expected)
    assert all(isinstance(t["dense"], list) for t in planned)  # as TOML and JSON give them back
    assert plan_trials(space, "grid", 3, seed=5) == planned  # --trials and the seed do not cut a grid


def test_a_range_draws_within_its_bounds_on_its_scale():
    state = np.random.RandomState(0)
    log = [Range(1e-5, 1e-1, log=True).rvs(state) for _ in range(400)]
    linear = [Range(1e-5, 1e-1).rvs(state) for _ in range(400)]
    assert all(1e-5 <= value <= 1e-1 for value in log + linear)
    assert all(float(f"{value:.4g}") == value for value in log + linear)  # four significant digits
    # Half the draws of a log range fall below the bounds' geometric mean (1e-3); of a linear one, a hundredth.
    assert 0.4 < np.mean(np.array(log) < 1e-3) < 0.6 and np.mean(np.array(linear) < 1e-3) < 0.05
    whole = [Range(8, 64, integer=True).rvs(state) for _ in range(100)]
    assert all(isinstance(value, int) and 8 <= value <= 64 for value in whole) and len(set(whole)) > 20


@pytest.mark.parametrize("document, message", [
    ({}, "defines no search space"),
    ({"optimizer": {"low": 1, "high": 2}}, "optimizer takes a list of values, not a range"),
    ({"batch_size": {"low": 8.5, "high": 64}}, "batch_size is a whole number; give whole-number low and high"),
    ({"learning_rate": {"low": 0.1, "top": 1}}, "is not a range. Expected learning_rate = {low = 0.0001"),
    ({"batch_size": [8, "many"]}, "batch_size value 'many' is not"),
], ids=["empty", "range of words", "fractional bounds", "unknown bound", "word for a number"])
def test_a_space_that_cannot_be_read_is_refused_naming_its_source(document, message):
    with pytest.raises(TlcliError) as error:
        parse_space(document, "random", KINDS, as_given, "--space space.toml")
    assert str(error.value).startswith("--space space.toml") and message in str(error.value)


def test_each_value_is_returned_as_the_searchs_check_reads_it():
    def canonical(key, value):
        return value.lower() if key == "optimizer" else value

    space = parse_space({"optimizer": ["Adam", "SGD"], "learning_rate": [1, 0.5], "batch_size": 16},
                        "grid", KINDS, canonical, "--space space.toml")
    assert space == {"optimizer": ["adam", "sgd"], "learning_rate": [1.0, 0.5], "batch_size": [16]}
    assert all(isinstance(value, float) for value in space["learning_rate"])


@pytest.mark.parametrize(
    "space, args, message",
    [
        ("lr = [0.1]\n", (), "'lr' cannot be searched"),
        ("learning_rate = {low = 0.001, high = 0.1}\n", ("--search", "grid"), "grid search needs a list"),
        ("learning_rate = {low = 0, high = 0.1, log = true}\n", (), "needs low > 0"),
        ("learning_rate = {low = 0.1, high = 0.01}\n", (), "above high"),
        ("dropout = []\n", (), "has no values"),
        ("dropout = [0.2, 1.5]\n", (), "--dropout 1.5 is out of range"),
        ("optimizer = ['adam', 'adagrad']\n", (), "'adagrad' is not one of"),
        ("learning_rate = ['fast']\n", (), "is not a number"),
        ("dense = ['wide']\n", (), "is not a list of layer sizes"),
        ("learning_rate = [0.1\n", (), "is not valid TOML"),
        ("dropout = [0.1]\n", ("--search", "annealing"), "--search 'annealing' is not one of"),
    ],
)
def test_bad_search_spaces_are_one_line_errors(colour_dataset, tmp_path, space, args, message):
    path = tmp_path / "space.toml"
    path.write_text(space)
    result = invoke("tune", colour_dataset, *COMMON, "--space", path, *args, "--out", tmp_path / "out", expect=2)
    assert message in result.output
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_random_search_over_lists_is_random_and_depends_on_the_seed():
    space = {"learning_rate": [0.1, 0.01, 0.001, 0.0001], "dropout": [0.0, 0.2, 0.5]}
    grid_order = plan_trials(space, "grid", None, 0)
    by_seed = [plan_trials(space, "random", 4, seed) for seed in range(5)]
    assert all(trials != grid_order[:4] for trials in by_seed), "not the first grid points in grid order"
    assert len({str(trials) for trials in by_seed}) == 5, "each seed draws its own trials"
    whole = plan_trials(space, "random", None, 3)
    points = sorted(tuple(sorted(trial.items())) for trial in whole)
    assert points == sorted(tuple(sorted(trial.items())) for trial in grid_order), "every point once, no repeats"


def test_a_resumed_random_search_extends_the_trials_it_drew():
    space = {"learning_rate": [0.1, 0.01, 0.001], "dropout": [0.0, 0.5], "dense": [64, 128]}
    assert plan_trials(space, "random", 7, 1)[:3] == plan_trials(space, "random", 3, 1)


def test_a_grid_of_billions_is_sampled_without_being_listed():
    space = {name: list(range(300)) for name in ("a", "b", "c", "d")}  # 8.1e9 points: listing them cannot finish
    trials = plan_trials(space, "random", 2, 0)
    assert len(trials) == 2 and trials[0] != trials[1]


@pytest.mark.parametrize("bound", [float("inf"), float("-inf"), float("nan")])
def test_a_range_bound_that_is_not_finite_is_one_line(bound):
    document = {"learning_rate": {"low": 1e-4, "high": bound, "log": False}}
    with pytest.raises(TlcliError, match="not a finite number") as error:
        parse_space(document, "random", {"learning_rate": float}, lambda key, value: value, "--space s.toml")
    assert "\n" not in str(error.value)
