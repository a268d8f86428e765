"""What every search shares: its settings, the kinds of search, and the Trials protocol that the
head and fine-tuning searches implement."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tlcli.augment.config import AugmentConfig
from tlcli.distribute.placement import DistributeConfig
from tlcli.errors import TlcliError
from tlcli.events import Events
from tlcli.settings import check_types
from tlcli.training.config import TrainConfig
from tlcli.tune.leaderboard import OBJECTIVES
from tlcli.tune.space import Range

PLANNED_SEARCHES = ("grid", "random")  # scikit-learn plans every trial up front


ADAPTIVE_SEARCHES = ("bayesian", "hyperband")  # KerasTuner picks each trial from the results so far


SEARCHES = PLANNED_SEARCHES + ADAPTIVE_SEARCHES


@dataclass(frozen=True)
class TuneConfig:
    # Every setting that no trial varies: a TrainConfig for the head search, or a
    # FinetuneConfig (the source run, data, fitting settings) for the fine-tuning search.
    base: object
    space: dict = field(default_factory=dict)
    search: str = "random"
    trials: int | None = None  # random search; grid search runs every combination
    objective: str = "val_loss"
    out: Path | None = None
    # How a fine-tuning search's trials augment their training images (None: as `tlcli finetune`
    # does by default). A head search's trials fit heads on features of the images as they are.
    augmentation: AugmentConfig | None = None
    distribution: DistributeConfig = field(default_factory=DistributeConfig)  # where the trials run

    def __post_init__(self):
        check_types(self)
        check_search(self.search)
        if self.objective not in OBJECTIVES:
            raise TlcliError(f"--objective {self.objective!r} is not one of: {', '.join(OBJECTIVES)}.")
        if self.trials is not None and self.trials < 1:
            raise TlcliError(f"--trials {self.trials} is out of range: it must be at least 1.")
        if self.kind == "head" and self.augmentation is not None and not self.augmentation.is_identity:
            raise TlcliError("Augmentation does not go with a head search: its trials fit heads on features computed "
                             "once from the images as they are. Leave --augment and its flags out, or search "
                             "fine-tuning of a trained run with --finetune RUN_DIR.")
        if self.distribution.strategy == "multi-worker":
            raise TlcliError("--strategy multi-worker: tlcli tune runs its trials in this one process. Use mirrored "
                             "for this machine's GPUs (or auto).")

    @property
    def kind(self) -> str:
        return "head" if isinstance(self.base, TrainConfig) else "finetune"

    def description(self) -> dict:
        """What makes a search the same search (compared on --resume); --trials may grow."""
        base = self.base.to_dict()
        base.pop("out")
        if self.augmentation is not None and self.kind == "finetune":
            base["augmentation"] = self.augmentation.to_dict()
        space = {key: value.to_dict() if isinstance(value, Range) else value for key, value in self.space.items()}
        document = {"kind": self.kind, "search": self.search, "objective": self.objective, "space": space,
                    "base": base}
        return json.loads(json.dumps(document, default=str))  # as it reads back from tune.json


def check_search(search: str) -> None:
    if search not in SEARCHES:
        raise TlcliError(f"--search {search!r} is not one of: {', '.join(SEARCHES)}.")


class Trials(Protocol):
    """One kind of search: how its trials run and what its best.toml holds. Made from the search's
    TuneConfig (`TRIALS(config)`)."""

    data: Path  # the dataset the trials read, known once open() returns
    sources: dict[Path, str]  # what else they read (path -> what it is), which --out must not hold

    def open(self, out: Path | None, events: Events) -> Path:
        """Read and check the data before anything is written; return the tuning directory."""

    def start(self, events: Events) -> None:
        """Prepare once what every trial shares."""

    def run(self, params: dict, trial_dir: Path) -> dict:
        """Train one trial, logging into trial_dir; return its metrics (as tlcli.training.fit.fit_and_measure
        measures them, plus any further facts for the leaderboard)."""

    def best_settings(self, params: dict) -> dict:
        """A trial's settings, under the option names of the command that takes best.toml."""

    def next_command(self, best: Path | str) -> str:
        """The command that runs best.toml."""

    def baseline(self, objective: str) -> float | None:
        """The score a trial must beat to be worth using (the source run's own), or None."""


def validation_samples(dataset, remedy: str):
    """The validation images trials are compared on; a dataset without any is refused."""
    samples = dataset.splits.get("val", ())
    if not samples:
        raise TlcliError(f"{dataset.root} has no validation images, and trials are compared on them. {remedy}")
    return samples
