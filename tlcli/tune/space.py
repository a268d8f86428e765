"""Search spaces for `tlcli tune`: read from TOML, checked, and planned into trials.

A space maps each searched setting to a list of values (grid or random search) or a `Range`
(every search but grid). Which settings a search may vary, and what a valid value is, belongs
to that search (tlcli/tune/head.py, tlcli/tune/finetune.py); reading and planning is shared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

from tlcli.errors import TlcliError
from tlcli.settings import EXPECTED, is_kind, is_number

# A searchable setting's kind: float, int, str or bool, checked here before the search's own
# check; None leaves the reading of the value wholly to the search's check.
Kinds = dict[str, type | None]
# check(key, value) -> the value in canonical form; raises TlcliError naming what is wrong.
Check = Callable[[str, object], object]


@dataclass(frozen=True)
class Range:
    """A numeric range, sampled uniformly or on a log scale (every search but grid)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def rvs(self, random_state):
        """ParameterSampler's interface: one draw from the seeded generator it passes in."""
        if self.log:
            value = math.exp(random_state.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = random_state.uniform(self.low, self.high)
        if self.integer:
            return int(round(value))
        return float(f"{value:.4g}")  # readable in the leaderboard and in best.toml

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "log": self.log}


def parse_space(document: dict, search: str, kinds: Kinds, check: Check, source: str) -> dict:
    """A search space from TOML: lists of values (grid or random), {low, high, log} ranges (random)."""
    if not document:
        raise TlcliError(f"{source} defines no search space. Give e.g. learning_rate = [0.001, 0.01].")
    unknown = [key for key in document if key not in kinds]
    if unknown:
        raise TlcliError(f"{source}: {unknown[0]!r} cannot be searched. Searchable: {', '.join(kinds)}.")
    if search == "hyperband" and "epochs" in document:
        raise TlcliError(
            f"{source}: epochs cannot be searched by hyperband, which gives each trial its epochs "
            "(up to --epochs). Remove epochs from the space, or use another --search."
        )
    space = {}
    for key, value in document.items():
        if isinstance(value, dict):
            space[key] = _parse_range(key, value, search, kinds[key], source)
            for bound in (space[key].low, space[key].high):
                _check_value(key, bound, kinds[key], check, source)
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise TlcliError(f"{source}: {key} = [] has no values. Give at least one, e.g. {key} = [...].")
        space[key] = [_check_value(key, item, kinds[key], check, source) for item in values]
    return space


def _parse_range(key: str, value: dict, search: str, kind, source: str) -> Range:
    example = f"{key} = {{low = 0.0001, high = 0.1, log = true}}"
    if kind not in (float, int):
        raise TlcliError(f"{source}: {key} takes a list of values, not a range. Use e.g. {key} = [...].")
    if search == "grid":
        raise TlcliError(
            f"{source}: {key} is a range, but grid search needs a list of values. "
            f"Give {key} = [...] or use --search random."
        )
    unknown = sorted(set(value) - {"low", "high", "log"})
    low, high, log = value.get("low"), value.get("high"), value.get("log", False)
    if unknown or not all(is_number(bound) for bound in (low, high)) or not isinstance(log, bool):
        raise TlcliError(f"{source}: {key} = {value} is not a range. Expected {example}.")
    if not all(math.isfinite(bound) for bound in (low, high)):
        raise TlcliError(f"{source}: {key} = {value} has a bound that is not a finite number. Expected {example}.")
    if low > high:
        raise TlcliError(f"{source}: {key} has low {low} above high {high}. Swap them.")
    if log and low <= 0:
        raise TlcliError(f"{source}: {key} has log = true with low {low}; a log range needs low > 0.")
    if kind is int and not (isinstance(low, int) and isinstance(high, int)):
        raise TlcliError(f"{source}: {key} is a whole number; give whole-number low and high.")
    return Range(low, high, log, integer=kind is int)


def _check_value(key: str, value, kind, check: Check, source: str):
    """Validate one candidate value as the searched command would, and return it in canonical form."""
    if kind is not None and not is_kind(value, kind):
        raise TlcliError(f"{source}: {key} value {value!r} is not {EXPECTED[kind]}.")
    try:
        value = check(key, value)
    except TlcliError as error:
        raise TlcliError(f"{source}: {error}") from None
    return float(value) if kind is float else value


def plan_trials(space: dict, search: str, trials: int | None, seed: int) -> list[dict]:
    """Every trial's values, in order. The first N random trials are the same whatever N is,
    so a search resumed with more --trials extends the earlier one."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if search == "grid":
        planned = list(ParameterGrid(space))
    elif all(isinstance(values, list) for values in space.values()):
        planned = _sample_grid(ParameterGrid(space), trials, seed)
    else:
        planned = list(ParameterSampler(space, n_iter=trials, random_state=seed))
    return [{key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}
            for params in planned]


def _sample_grid(grid, trials: int | None, seed: int) -> list[dict]:
    """`trials` points of `grid` drawn at random without replacement, one after another (so the
    first N are the same whatever N is), without listing the grid: its points are looked up by
    index, and a grid of millions costs no more than the points drawn."""
    import numpy as np

    size = len(grid)
    wanted = size if trials is None else min(trials, size)
    random = np.random.default_rng(seed)
    drawn: dict[int, None] = {}
    while len(drawn) < wanted:
        drawn.setdefault(int(random.integers(size)))
    return [grid[index] for index in drawn]


def trial_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)
