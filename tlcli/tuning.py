"""`tlcli tune`: hyperparameter search over the head and optimiser, on cached backbone features.

The frozen backbone's features are computed once for the train and validation images; every
trial then builds a head, fits it on those features with early stopping and is scored on the
validation features, so a trial costs seconds rather than a pass over the images.

Grid and random search use scikit-learn's ParameterGrid and ParameterSampler: already
installed, small, and reproducible under a seed (ParameterSampler draws from one seeded
generator, in sorted key order), and they plan every trial up front, so a resumed search knows
which trials are left. Bayesian optimisation and hyperband choose each trial from the results
so far; for those, KerasTuner's oracles propose the values (tlcli/adaptive_search.py), and
tlcli runs and records the trials the same way.

The tuning directory (`--out`):

    tune.json         the search: settings, space, objective, seed
    leaderboard.csv   one row per finished trial, best first
    leaderboard.json  the same, with every trial's full result
    best.toml         the best trial as settings that `tlcli train --config best.toml DATA` takes
    trials/NNNN/      each trial's history.csv and TensorBoard logs
    keras_tuner/      the oracle's state (bayesian and hyperband)

Each finished trial is recorded at once (atomically), so `--resume` skips it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.config import FitConfig, TrainConfig, parse_dense, split_fit_settings
from tlcli.errors import TlcliError
from tlcli.runs import HISTORY, default_run_dir, finish_run_dir, prepare_run_dir, write_atomic, write_json

PLANNED_SEARCHES = ("grid", "random")  # scikit-learn plans every trial up front
ADAPTIVE_SEARCHES = ("bayesian", "hyperband")  # KerasTuner picks each trial from the results so far
SEARCHES = PLANNED_SEARCHES + ADAPTIVE_SEARCHES
OBJECTIVES = {"val_loss": "minimise", "val_accuracy": "maximise"}

# What a head search may vary, and the type of each value.
SEARCHABLE = {
    "learning_rate": float,
    "optimizer": str,
    "dropout": float,
    "dense": tuple,
    "activation": str,
    "weight_decay": float,
    "label_smoothing": float,
    "batch_size": int,
    "momentum": float,
}
_FIT_NAMES = {f.name for f in dataclasses.fields(FitConfig)}
# Keys a settings file (`tlcli train --config`) holds: every train option by name.
TRAIN_SETTINGS = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "fit"} | _FIT_NAMES

TRIALS = "trials"


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


def default_space(search: str) -> dict:
    """A sensible head search: eight grid points, or ranges for random search."""
    if search == "grid":
        return {"learning_rate": [1e-3, 1e-2], "dropout": [0.0, 0.3], "dense": [(), (256,)]}
    return {
        "learning_rate": Range(1e-4, 3e-2, log=True),
        "optimizer": ["adam", "adamw", "sgd", "rmsprop"],
        "dropout": Range(0.0, 0.5),
        "dense": [(), (128,), (256,), (512, 128)],
        "weight_decay": [0.0, 1e-5, 1e-4, 1e-3],
        "label_smoothing": [0.0, 0.1],
    }


def parse_space(document: dict, search: str, base: TrainConfig, source: str) -> dict:
    """A search space from TOML: lists of values (grid or random), {low, high, log} ranges (random)."""
    if not document:
        raise TlcliError(f"{source} defines no search space. Give e.g. learning_rate = [0.001, 0.01].")
    space = {}
    for key, value in document.items():
        if key not in SEARCHABLE:
            raise TlcliError(
                f"{source}: {key!r} cannot be searched. Searchable: {', '.join(SEARCHABLE)}."
            )
        if isinstance(value, dict):
            space[key] = _parse_range(key, value, search, source)
            for bound in (space[key].low, space[key].high):
                _check_value(base, key, bound, source)
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise TlcliError(f"{source}: {key} = [] has no values. Give at least one, e.g. {key} = [...].")
        space[key] = [_check_value(base, key, item, source) for item in values]
    return space


def _parse_range(key: str, value: dict, search: str, source: str) -> Range:
    kind = SEARCHABLE[key]
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
    if unknown or not all(_is_number(bound) for bound in (low, high)) or not isinstance(log, bool):
        raise TlcliError(f"{source}: {key} = {value} is not a range. Expected {example}.")
    if low > high:
        raise TlcliError(f"{source}: {key} has low {low} above high {high}. Swap them.")
    if log and low <= 0:
        raise TlcliError(f"{source}: {key} has log = true with low {low}; a log range needs low > 0.")
    if kind is int and not (isinstance(low, int) and isinstance(high, int)):
        raise TlcliError(f"{source}: {key} is a whole number; give whole-number low and high.")
    return Range(low, high, log, integer=kind is int)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_kind(value, kind) -> bool:
    if kind is str:
        return isinstance(value, str)
    return _is_number(value) and (kind is float or isinstance(value, int))


def _check_value(base: TrainConfig, key: str, value, source: str):
    """Validate one candidate value the way train would, and return it in canonical form."""
    kind = SEARCHABLE[key]
    if kind is tuple:
        try:
            value = parse_dense(value)
        except TlcliError as error:
            raise TlcliError(f"{source}: {error} Give dense as e.g. [[], [128], [256, 64]].") from None
    elif not _is_kind(value, kind):
        expected = {str: "a name", int: "a whole number", float: "a number"}[kind]
        raise TlcliError(f"{source}: {key} value {value!r} is not {expected}.")
    try:
        trial_config(base, {key: value})
    except TlcliError as error:
        raise TlcliError(f"{source}: {key} = {value!r}: {error}") from None
    return float(value) if kind is float else value


def trial_config(base: TrainConfig, params: dict) -> TrainConfig:
    """The base settings with one trial's values."""
    params = {key: tuple(value) if key == "dense" else value for key, value in params.items()}
    fit_values = {key: value for key, value in params.items() if key in _FIT_NAMES}
    head_values = {key: value for key, value in params.items() if key not in _FIT_NAMES}
    return dataclasses.replace(base, fit=dataclasses.replace(base.fit, **fit_values), **head_values)


def plan_trials(space: dict, search: str, trials: int | None, seed: int) -> list[dict]:
    """Every trial's values, in order. The first N random trials are the same whatever N is,
    so a search resumed with more --trials extends the earlier one."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if search == "grid":
        planned = list(ParameterGrid(space))
    elif all(isinstance(values, list) for values in space.values()):
        # Lists only: sample without replacement, as a seeded shuffle of the whole grid.
        grid_size = len(ParameterGrid(space))
        planned = list(ParameterSampler(space, n_iter=grid_size, random_state=seed))[:trials]
    else:
        planned = list(ParameterSampler(space, n_iter=trials, random_state=seed))
    return [{key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}
            for params in planned]


def trial_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class TuneConfig:
    base: TrainConfig  # data, backbone and every setting that no trial varies
    space: dict = field(default_factory=dict)
    search: str = "random"
    trials: int | None = None  # random search; grid search runs every combination
    objective: str = "val_loss"
    out: Path | None = None

    def __post_init__(self):
        check_search(self.search)
        if self.objective not in OBJECTIVES:
            raise TlcliError(f"--objective {self.objective!r} is not one of: {', '.join(OBJECTIVES)}.")
        if self.trials is not None and self.trials < 1:
            raise TlcliError(f"--trials {self.trials} is out of range: it must be at least 1.")

    def description(self) -> dict:
        """What makes a search the same search (compared on --resume); --trials may grow."""
        base = self.base.to_dict()
        base.pop("out")
        space = {key: value.to_dict() if isinstance(value, Range) else value for key, value in self.space.items()}
        document = {"search": self.search, "objective": self.objective, "space": space, "base": base}
        return json.loads(json.dumps(document, default=str))  # as it reads back from tune.json


def check_search(search: str) -> None:
    if search not in SEARCHES:
        raise TlcliError(f"--search {search!r} is not one of: {', '.join(SEARCHES)}.")


def settings_from(settings: dict, data: Path) -> TrainConfig:
    """A TrainConfig from flat settings (train's option names), as `tlcli train --config` reads them."""
    settings = dict(settings)
    settings.pop("out", None)
    settings["dense"] = parse_dense(settings.get("dense"))
    rest, fit = split_fit_settings(settings)
    return TrainConfig(data=data, fit=fit, **rest)


@dataclass
class TuneOutcome:
    out_dir: Path
    leaderboard: list[dict]  # finished trials, best first, each with its rank
    ran: int  # trials run by this invocation
    skipped: int  # finished earlier, not repeated


def tune(config: TuneConfig, *, overwrite: bool = False, resume: bool = False, quiet: bool = False) -> TuneOutcome:
    from tlcli.backbones import get_backbone, resolve_image_size
    from tlcli.console import err
    from tlcli.data import SplitOptions, load_dataset
    from tlcli.model import build_feature_extractor
    from tlcli.runs import resumable
    from tlcli.runtime import set_seed
    from tlcli.train import (
        build_config_head, cached_features, class_weights_for, feature_dataset, fit_and_measure, report_dataset,
    )
    from tlcli.training import History
    from tlcli.weights import parse_weights

    base = config.base
    spec = get_backbone(base.model)
    image_size = resolve_image_size(spec, base.image_size)
    weights = parse_weights(base.weights)
    dataset = load_dataset(base.data, SplitOptions(base.val_split, base.test_split, base.fit.seed), strict=base.strict)
    train_samples, val_samples = dataset.split("train"), dataset.splits.get("val", ())
    if not val_samples:
        raise TlcliError(
            f"{base.data} has no validation images, and trials are compared on them. "
            "Add a val/ folder or use --val-split above 0."
        )
    report_dataset(dataset, quiet)

    out_dir = prepare_tune_dir(Path(config.out) if config.out else default_run_dir(spec.name, "tune-"),
                               config, overwrite=overwrite, resume=resume)
    finished = {record["trial"]: record for record in (read_leaderboard(out_dir) if resume else [])}
    adaptive = config.search in ADAPTIVE_SEARCHES
    if adaptive:  # hyperband's number of trials follows from --epochs
        pending, total = None, (config.trials or 10) if config.search == "bayesian" else None
    else:
        planned = plan_trials(config.space, config.search, config.trials or 10, base.fit.seed)
        done = {trial_key(record["params"]) for record in finished.values()}
        pending = [(number, params) for number, params in enumerate(planned, start=1) if trial_key(params) not in done]
        total = len(planned)
        if config.search == "grid" and config.trials and not quiet:
            err.print("[dim]Grid search runs every combination; --trials is for random and bayesian search.[/]")
        if not quiet:
            err.print(f"{config.search.capitalize()} search: {total} trial(s), {total - len(pending)} finished earlier.")
    best_settings_base = dataclasses.replace(base, image_size=image_size)
    if not pending and not adaptive:
        finish_run_dir(out_dir)
        return TuneOutcome(out_dir, write_tune_results(out_dir, list(finished.values()), config, best_settings_base),
                           ran=0, skipped=len(finished))

    set_seed(base.fit.seed)  # as train does before building the backbone: the same features
    extractor = build_feature_extractor(spec, image_size, weights, base.pooling)
    train_features, val_features = cached_features(
        extractor, base.pooling, train_samples, val_samples, image_size, base.fit.batch_size, quiet
    )
    num_classes = len(dataset.class_names)
    feature_shape = tuple(extractor.output_shape[1:])
    class_weights = class_weights_for(base.fit, train_features.labels, num_classes)
    earlier = len(finished)

    def run_trial(number: int, params: dict) -> dict:
        """Fit one head on the cached features; record the result at once."""
        trial = trial_config(base, params)
        trial_dir = out_dir / TRIALS / f"{number:04d}"
        shutil.rmtree(trial_dir, ignore_errors=True)  # an unfinished trial starts over
        head = build_config_head(trial, feature_shape, num_classes)
        fit_config = trial.fit
        metrics = fit_and_measure(
            head,
            feature_dataset(train_features, num_classes, fit_config.batch_size, fit_config.seed, shuffle=True,
                            class_weights=class_weights),
            feature_dataset(val_features, num_classes, fit_config.batch_size),
            fit_config, steps=-(-len(train_features.labels) // fit_config.batch_size), run_dir=trial_dir,
            history=History(trial_dir / HISTORY), quiet=True,
        )
        finish_run_dir(trial_dir)
        record = trial_record(number, params, metrics, config.objective)
        finished[number] = record
        write_tune_results(out_dir, list(finished.values()), config, best_settings_base)
        if not quiet:
            err.print(f"trial {number}{f'/{total}' if total else ''}: {format_params(params)} -> "
                      f"{config.objective} {_format_number(record['objective'])} "
                      f"({record['epochs_run']} epochs, {record['seconds']:.1f} s)")
        return record

    with resumable(out_dir):
        if adaptive:
            from tlcli.adaptive_search import adaptive_search

            adaptive_search(config, out_dir, run_trial)
        else:
            for number, params in pending:
                run_trial(number, params)
    leaderboard = write_tune_results(out_dir, list(finished.values()), config, best_settings_base)
    finish_run_dir(out_dir)
    ran = len(pending) if pending is not None else len(finished) - earlier
    return TuneOutcome(out_dir, leaderboard, ran=ran, skipped=len(leaderboard) - ran)


def prepare_tune_dir(path: Path, config: TuneConfig, *, overwrite: bool, resume: bool) -> Path:
    """Create the tuning directory, or reopen it for --resume; never clobber one by accident."""
    settings_path = path / "tune.json"
    description = config.description()
    if resume:
        if not settings_path.is_file():
            raise TlcliError(
                f"--resume: {path} holds no tuning search (tune.json is missing). "
                "Start one without --resume, or give the --out of the search to continue."
            )
        saved = json.loads(settings_path.read_text())
        changed = [key for key in ("search", "objective", "space") if saved.get(key) != description[key]]
        changed += [key for key in description["base"] if saved.get("base", {}).get(key) != description["base"][key]]
        if changed:
            raise TlcliError(
                f"--resume: the search in {path} had other settings ({', '.join(changed)}). "
                "Repeat the original command with --resume (only --trials may grow), or use --overwrite."
            )
        return path
    prepare_run_dir(path, overwrite=overwrite, resume=False)
    write_json(settings_path, description)
    return path


def read_leaderboard(path: Path) -> list[dict]:
    leaderboard = path / "leaderboard.json"
    if not leaderboard.is_file():
        return []
    trials = json.loads(leaderboard.read_text())["trials"]
    return [{key: value for key, value in record.items() if key != "rank"} for record in trials]


def trial_record(number: int, params: dict, metrics: dict, objective: str) -> dict:
    def finite(value):
        return value if value is not None and math.isfinite(value) else None

    val_loss, val_accuracy = finite(metrics.get("val_loss")), finite(metrics.get("val_accuracy"))
    values = {"val_loss": val_loss, "val_accuracy": val_accuracy}
    return {
        "trial": number,
        "params": params,
        "objective": values[objective],
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "seconds": metrics["seconds"],
    }


def rank(records: list[dict], objective: str) -> list[dict]:
    """Best first; a trial whose loss diverged (no finite objective) ranks last."""
    sign = 1 if OBJECTIVES[objective] == "minimise" else -1
    ordered = sorted(records, key=lambda r: (r["objective"] is None, sign * (r["objective"] or 0), r["trial"]))
    return [{"rank": position, **record} for position, record in enumerate(ordered, start=1)]


def write_tune_results(out_dir: Path, records: list[dict], config: TuneConfig, base: TrainConfig) -> list[dict]:
    """leaderboard.json, leaderboard.csv and best.toml, each replaced atomically."""
    leaderboard = rank(records, config.objective)
    write_json(out_dir / "leaderboard.json", {
        "objective": config.objective,
        "direction": OBJECTIVES[config.objective],
        "search": config.search,
        "trials": leaderboard,
    })
    write_atomic(out_dir / "leaderboard.csv", leaderboard_csv(leaderboard))
    if leaderboard and leaderboard[0]["objective"] is not None:
        best = leaderboard[0]
        comment = (
            f"Best of {len(leaderboard)} trial(s) by {config.objective} = {best['objective']:.6g} "
            f"(trial {best['trial']}).\nTrain it with: tlcli train --config best.toml DATA"
        )
        write_atomic(out_dir / "best.toml", to_toml(best_settings(base, best["params"]), comment))
    return leaderboard


def best_settings(base: TrainConfig, params: dict) -> dict:
    """The trial's full settings under train's option names (what `tlcli train --config` reads)."""
    settings = trial_config(base, params).to_dict()
    for key in ("data", "out"):
        settings.pop(key)
    settings["dense"] = list(settings["dense"])
    return settings


def leaderboard_csv(leaderboard: list[dict]) -> str:
    """One row per trial, best first: rank, the trial's values, its results."""
    names = sorted({key for record in leaderboard for key in record["params"]})
    columns = ["rank", "trial", *names, "val_loss", "val_accuracy", "best_epoch", "epochs_run", "seconds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for record in leaderboard:
        row = [record["rank"], record["trial"]]
        row += [format_value(record["params"].get(name, "")) for name in names]
        row += [record[column] if record[column] is not None else "" for column in columns[len(names) + 2:]]
        writer.writerow(row)
    return buffer.getvalue()


def format_value(value) -> str:
    if isinstance(value, list):
        return ",".join(str(unit) for unit in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_params(params: dict) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in sorted(params.items()))


def _format_number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def to_toml(settings: dict, comment: str = "") -> str:
    """Flat settings as TOML (the standard library reads TOML but does not write it)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for key, value in settings.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
