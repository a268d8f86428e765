"""The head search of `tlcli tune DATA`: heads and optimiser settings on cached backbone features.

The frozen backbone's features are computed once for the train and validation images; every
trial then builds a head, fits it on those features with early stopping and is scored on the
validation features, so a trial costs seconds rather than a pass over the images. best.toml
holds the settings `tlcli train --config best.toml DATA` takes.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from tlcli.data.dataset import SplitOptions, load_dataset
from tlcli.distribute.placement import place
from tlcli.errors import TlcliError
from tlcli.events import Events
from tlcli.models.backbones import get_backbone, resolve_image_size
from tlcli.models.build import build_feature_extractor
from tlcli.models.weights import parse_weights
from tlcli.runs.directory import default_run_dir
from tlcli.runs.history import History
from tlcli.runs.names import HISTORY
from tlcli.runtime import set_seed
from tlcli.training.config import FitConfig, TrainConfig, parse_dense, split_fit_settings
from tlcli.training.fit import class_weights_for
from tlcli.training.lifecycle import read_sources
from tlcli.training.train import build_config_head, cached_features, fit_head, head_route
from tlcli.tune.space import Kinds, Range, parse_space
from tlcli.tune.trials import validation_samples

# What a head search may vary; dense (head layouts) is read by check_value.
SEARCHABLE: Kinds = {
    "learning_rate": float,
    "optimizer": str,
    "dropout": float,
    "dense": None,
    "activation": str,
    "weight_decay": float,
    "label_smoothing": float,
    "batch_size": int,
    "momentum": float,
}
_FIT_NAMES = {f.name for f in dataclasses.fields(FitConfig)}
# Keys a settings file (`tlcli train --config`) holds: every train option by name.
SETTINGS = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "fit"} | _FIT_NAMES


def default_space(search: str) -> dict:
    """A sensible head search: six grid points, or ranges for random search.

    The linear head without dropout is solved (its penalty cross-validated, its optimiser
    settings unused), so the grid varies what the solver does not: hidden layers and dropout.
    """
    if search == "grid":
        return {"dense": [(), (256,), (512,)], "dropout": [0.0, 0.3]}
    return {
        "learning_rate": Range(1e-4, 3e-2, log=True),
        "optimizer": ["adam", "adamw", "sgd", "rmsprop"],
        "dropout": [0.0, 0.2, 0.5],
        "dense": [(), (128,), (256,), (512, 128)],
        "weight_decay": [0.0, 1e-5, 1e-4, 1e-3],
        "label_smoothing": [0.0, 0.1],
    }


def search_space(document: dict | None, search: str, base: TrainConfig, source: str) -> dict:
    """The space a TOML document defines (checked as `tlcli train` would), or the default one."""
    if document is None:
        return default_space(search)
    return parse_space(document, search, SEARCHABLE, functools.partial(check_value, base), source)


def check_value(base: TrainConfig, key: str, value):
    if key == "dense":
        try:
            value = parse_dense(value)
        except TlcliError as error:
            raise TlcliError(f"{error} Give dense as e.g. [[], [128], [256, 64]].") from None
    try:
        trial_config(base, {key: value})
    except TlcliError as error:
        raise TlcliError(f"{key} = {value!r}: {error}") from None
    return value


def trial_config(base: TrainConfig, params: dict) -> TrainConfig:
    """The base settings with one trial's values."""
    params = {key: tuple(value) if key == "dense" else value for key, value in params.items()}
    fit_values = {key: value for key, value in params.items() if key in _FIT_NAMES}
    head_values = {key: value for key, value in params.items() if key not in _FIT_NAMES}
    return dataclasses.replace(base, fit=dataclasses.replace(base.fit, **fit_values), **head_values)


def settings_from(settings: dict, data: Path) -> TrainConfig:
    """A TrainConfig from flat settings (train's option names), as `tlcli train --config` reads them."""
    settings = dict(settings)
    settings.pop("out", None)
    settings["dense"] = parse_dense(settings.get("dense"))
    rest, fit = split_fit_settings(settings)
    return TrainConfig(data=data, fit=fit, **rest)


class HeadTrials:
    """Trials that fit a head on features the frozen backbone computed once."""

    def __init__(self, config):
        self.base = base = config.base
        self.distribution = config.distribution
        self.spec = get_backbone(base.model)
        self.image_size = resolve_image_size(self.spec, base.image_size)

    def open(self, out: Path | None, events: Events) -> Path:
        base = self.base
        self.weights = parse_weights(base.weights)
        self.dataset = load_dataset(base.data, SplitOptions(base.val_split, base.test_split, base.fit.seed),
                                    strict=base.strict, labels=base.label_file())
        validation_samples(self.dataset, "Add a val/ folder or use --val-split above 0.")
        events.dataset(self.dataset)
        self.data = self.dataset.root
        self.sources = read_sources(weights=self.weights)
        return Path(out) if out else default_run_dir(self.spec.name, "tune-")

    def start(self, events: Events) -> None:
        base = self.base
        self.placement = place(self.distribution)
        events.placed(self.placement, base.fit.batch_size)
        set_seed(base.fit.seed)  # as train does before building the backbone: the same features
        extractor = build_feature_extractor(self.spec, self.image_size, self.weights, base.pooling)
        self.train_features, self.val_features = cached_features(
            extractor, base.pooling, self.dataset.split("train"), self.dataset.splits["val"], self.image_size,
            base.fit.batch_size, events,
        )
        self.num_classes = len(self.dataset.class_names)
        self.feature_shape = tuple(extractor.output_shape[1:])
        self.class_weights = class_weights_for(base.fit, self.train_features.labels, self.num_classes)

    def run(self, params: dict, trial_dir: Path) -> dict:
        trial = trial_config(self.base, params)
        route, _ = head_route(trial, None)
        with self.placement.strategy.scope():  # as `tlcli train` builds its head
            head = build_config_head(trial, self.feature_shape, self.num_classes)
        return fit_head(route, head, self.train_features, self.val_features, trial.fit, self.class_weights,
                        run_dir=trial_dir, history=History(trial_dir / HISTORY), placement=self.placement)

    def best_settings(self, params: dict) -> dict:
        """The trial's full settings under train's option names (what `tlcli train --config` reads)."""
        base = dataclasses.replace(self.base, image_size=self.image_size)
        settings = trial_config(base, params).to_dict()
        for key in ("data", "out"):
            settings.pop(key)
        settings["dense"] = list(settings["dense"])
        return settings

    def next_command(self, best: Path | str) -> str:
        return f"tlcli train --config {best} DATA"

    def baseline(self, objective: str) -> None:
        return None  # a new head has nothing to beat


TRIALS = HeadTrials  # what `tlcli.tune.search.search_kind` hands out
