"""Bayesian optimisation and hyperband for `tlcli tune`, through KerasTuner's oracles.

KerasTuner's oracles choose the next trial from the results so far (a Gaussian process for
bayesian optimisation; successive halving of the epoch budget for hyperband). tlcli keeps its
own trial: the oracle only proposes values, and `run` runs the trial as every search does.
The oracle's state lives in DIR/keras_tuner, which is how `--resume` skips finished trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tlcli.runtime import import_tensorflow

# Hyperband needs a largest epoch budget; without --epochs, this one.
HYPERBAND_EPOCHS = 30

import_tensorflow()  # KerasTuner imports TensorFlow: let tlcli do it quietly first

import keras_tuner  # noqa: E402

from tlcli.tune.leaderboard import OBJECTIVES  # noqa: E402
from tlcli.tune.space import Range  # noqa: E402
from tlcli.tune.trials import TuneConfig  # noqa: E402

ORACLE_DIR = "keras_tuner"
_DENSE_NONE = "none"


def hyperparameters(space: dict) -> keras_tuner.HyperParameters:
    """The search space in KerasTuner's terms; head layouts become strings ("none", "512,128")."""
    hp = keras_tuner.HyperParameters()
    for key, values in sorted(space.items()):
        if isinstance(values, Range):
            sampling = "log" if values.log else "linear"
            if values.integer:
                hp.Int(key, int(values.low), int(values.high), sampling=sampling)
            else:
                hp.Float(key, float(values.low), float(values.high), sampling=sampling)
        elif key == "dense":
            hp.Choice(key, [",".join(str(unit) for unit in layout) or _DENSE_NONE for layout in values])
        else:
            hp.Choice(key, list(values))
    return hp


def trial_params(values: dict) -> dict:
    """A KerasTuner trial's values as tlcli settings; hyperband's epoch budget becomes `epochs`."""
    params = {}
    for key, value in values.items():
        if key == "tuner/epochs":
            params["epochs"] = int(value)
        elif key == "dense":
            params[key] = [] if value == _DENSE_NONE else [int(unit) for unit in value.split(",")]
        elif isinstance(value, float):
            params[key] = float(f"{value:.4g}")  # as random search rounds: readable, and what is trained
        elif not key.startswith("tuner/"):
            params[key] = value
    return params


class _TrialTuner(keras_tuner.engine.base_tuner.BaseTuner):
    def __init__(self, oracle, directory: Path, run: Callable[[int, dict], dict], objective: str):
        super().__init__(oracle, directory=str(directory), project_name="search", overwrite=False)
        self._run, self._objective = run, objective

    def run_trial(self, trial, *args, **kwargs):
        record = self._run(int(trial.trial_id) + 1, trial_params(trial.hyperparameters.values))
        if record["objective"] is None:
            raise keras_tuner.errors.FailedTrialError(f"{self._objective} is not finite (the loss diverged).")
        return {self._objective: record["objective"]}

    def save_model(self, trial_id, model, step=0):
        """No models: tlcli records each trial's result itself."""

    def load_model(self, trial):
        """No models: the best trial is retrained from best.toml."""


def adaptive_search(config: TuneConfig, out_dir: Path, run: Callable[[int, dict], dict]) -> None:
    """Let KerasTuner's oracle pick trials and `run(number, params) -> record` run them."""
    objective = keras_tuner.Objective(config.objective, direction="min" if OBJECTIVES[config.objective] == "minimise" else "max")
    seed = config.base.fit.seed
    common = dict(objective=objective, seed=seed, hyperparameters=hyperparameters(config.space),
                  tune_new_entries=False, allow_new_entries=False)
    trials = config.trials or 10
    if config.search == "bayesian":
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=trials, max_consecutive_failed_trials=trials, **common)
    else:
        oracle = keras_tuner.oracles.HyperbandOracle(
            max_epochs=config.base.fit.epochs or HYPERBAND_EPOCHS, factor=3, max_consecutive_failed_trials=100, **common)
    tuner = _TrialTuner(oracle, out_dir / ORACLE_DIR, run, config.objective)
    tuner.search(verbose=0)
