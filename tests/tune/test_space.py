"""tlcli.tune.space: reading search spaces, and planning their trials."""

from __future__ import annotations

import pytest

from tlcli.errors import TlcliError
from tlcli.tune.space import parse_space, plan_trials


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
