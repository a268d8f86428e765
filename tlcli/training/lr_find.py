"""`tlcli lr-find`: the learning-rate range test (training.range_test) of one fine-tuning stage
of a run, as that stage would train: the same unfreezing, the same batches (the frozen part's
output cached when that pays), on the run's training images. The run's model is read, never
written; the plot goes to the run, or to --out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import AugmentConfig
from tlcli.data.recorded import run_dataset
from tlcli.data.row_cache import DEFAULT_MEMORY_GIB
from tlcli.distribute.placement import DistributeConfig, place
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.models.saved import load_placed_model
from tlcli.models.weights import find_base
from tlcli.runs.curves import plot_range_test
from tlcli.runs.directory import read_run
from tlcli.runs.names import LR_FIND_PLOT
from tlcli.runs.outputs import claim_file, record_files
from tlcli.runtime import set_seed
from tlcli.storage import Location, Url
from tlcli.training.config import FitConfig
from tlcli.training.finetune import (
    fine_tuning_augmentation,
    first_unfrozen_index,
    parse_unfreeze,
    run_backbone,
    unfreeze,
)
from tlcli.training.range_test import END, START, STEPS, RangeTest, range_test
from tlcli.training.stage_inputs import cached_inputs, image_inputs, plan_route


@dataclass(frozen=True)
class LrFindConfig:
    """What `tlcli lr-find` is asked: a run, the unfreezing of the stage to test, and how that
    stage would train (its optimiser, batches, augmentation and cache)."""

    model: Location  # the run: its directory or its model.keras
    unfreeze: str | None = None  # None: the backbone's top block
    data: Path | None = None  # None: the dataset the run records
    steps: int = STEPS
    start: float = START
    end: float = END
    optimizer: str = "adam"
    batch_size: int = 32  # per replica
    seed: int = 0
    out: Path | None = None  # the plot; None: RUN_DIR/lr_find.png
    overwrite: bool = False
    train_batch_norm: bool = False
    strict: bool = False
    cache_features: bool = True
    cache_memory: float = DEFAULT_MEMORY_GIB
    distribution: DistributeConfig = DistributeConfig()
    augmentation: AugmentConfig | None = None  # None: fine-tuning's default (training.finetune)

    def __post_init__(self):
        self.fit()  # a bad optimiser or batch size is refused here
        if not 0 < self.start < self.end:
            raise TlcliError(f"--start {self.start:g} and --end {self.end:g}: the rates must grow from a positive "
                             "start. Use e.g. --start 1e-7 --end 1.")

    def fit(self) -> FitConfig:
        """How the stage's optimiser steps (the range test sets its rate each step)."""
        return FitConfig(optimizer=self.optimizer, batch_size=self.batch_size, seed=self.seed)


@dataclass(frozen=True)
class RateFinding:
    """`tlcli lr-find`'s result: the range test of one stage's unfreezing of a run."""

    run: Path
    unfreeze: str
    test: RangeTest
    plot: Path | None  # None on the workers that are not the chief


def find_learning_rate(config: LrFindConfig, events: Events = SILENT) -> RateFinding:
    """The learning-rate range test of a run fine-tuned from `config.unfreeze` (default: its top
    block), as a fine-tuning stage would train it, on the run's training images augmented as
    fine-tuning augments them; its plot goes to `config.out` (default: RUN_DIR/lr_find.png).
    The run's model is read, never written. `events` hears when the test starts."""
    fit = config.fit()
    placement = place(config.distribution, config.data)
    run = read_run(config.model)
    spec = run_backbone(run)
    unfreezing = parse_unfreeze(config.unfreeze or spec.blocks[-1].name, spec)
    dataset, _ = run_dataset(run, config.data, config.strict)
    out = config.out
    plot = claim_file(out if out is not None else run.path / LR_FIND_PLOT, suffix=".png", overwrite=config.overwrite,
                      default=out is None, data=(*dataset.places, *run.dataset_places), sources={run.model_location: "the run's model"},
                      own={"run": ("lr_find*.png",)})
    set_seed(fit.seed)
    model, run = load_placed_model(config.model, placement)
    base = find_base(model, spec)
    first = first_unfrozen_index(base, spec, unfreezing)
    unfreeze(base, first, config.train_batch_norm)
    augment = build_augmenter(fine_tuning_augmentation(config.augmentation, run), fit.seed)
    with model.distribute_strategy.scope():
        route = plan_route(model, base, spec, first, config.cache_features, unfreezing, augment is not None)
    if route.split is None:
        test_model, inputs = model, image_inputs(placement, dataset, run.image_size, fit, augment=augment)
    else:  # the stage's own cache, without the validation images the test does not read
        test_model = route.split.upper
        inputs, _ = cached_inputs(placement, dataset, route.split, run.image_size, fit, validation=False,
                                  memory_budget=int(config.cache_memory * 2**30),
                                  scratch_dir=None if isinstance(plot, Url) else plot.parent)
    events.note("Running the range test: the rate grows each step until the loss blows up (the run's model is "
                "not changed).")
    try:
        test = range_test(test_model, inputs.endless(), fit, start=config.start, end=config.end, steps=config.steps)
    finally:
        inputs.close()
    if placement.is_chief:
        plot_range_test(test, plot)
        record_files(plot.parent, [plot.name])
    return RateFinding(run.path, unfreezing, test, plot if placement.is_chief else None)
