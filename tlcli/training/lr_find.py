"""`tlcli lr-find`: the learning-rate range test (training.range_test) of one fine-tuning stage
of a run, as that stage would train: the same unfreezing, the same batches (the frozen part's
output cached when that pays), on the run's training images. The run's model is read, never
written; the plot goes to the run, or to --out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.settings import AugmentConfig
from tlcli.data.recorded import run_dataset
from tlcli.data.row_cache import DEFAULT_MEMORY_GIB
from tlcli.distribute.placement import DistributeConfig, place
from tlcli.errors import TlcliError
from tlcli.models.saved import load_placed_model
from tlcli.models.weights import find_base
from tlcli.runs.curves import plot_range_test
from tlcli.runs.directory import read_run
from tlcli.runs.names import LR_FIND_PLOT
from tlcli.runs.outputs import claim_file, record_files
from tlcli.runtime import set_seed
from tlcli.storage import Url
from tlcli.training.config import FitConfig
from tlcli.training.finetune import (
    FALLBACK_RATE,
    fine_tuning_augmentation,
    first_unfrozen_index,
    parse_unfreeze,
    run_backbone,
    unfreeze,
)
from tlcli.training.range_test import END, START, STEPS, RangeTest, range_test
from tlcli.training.stage_inputs import cached_inputs, image_inputs, plan_route


@dataclass(frozen=True)
class RateFinding:
    """`tlcli lr-find`'s result: the range test of one stage's unfreezing of a run."""

    run: Path
    unfreeze: str
    test: RangeTest
    plot: Path | None  # None on the workers that are not the chief


def find_learning_rate(
    source: Path,
    unfreezing: str | None = None,
    *,
    data: Path | None = None,
    fit: FitConfig = FitConfig(learning_rate=FALLBACK_RATE),
    steps: int = STEPS,
    start: float = START,
    end: float = END,
    out: Path | None = None,
    overwrite: bool = False,
    train_batch_norm: bool = False,
    strict: bool = False,
    cache_features: bool = True,
    cache_memory: float = DEFAULT_MEMORY_GIB,
    distribution: DistributeConfig = DistributeConfig(),
    augmentation: AugmentConfig | None = None,
    on_start=None,
) -> RateFinding:
    """The learning-rate range test of a run fine-tuned from `unfreezing` (default: its top
    block), as a fine-tuning stage would train it, on the run's training images augmented as
    fine-tuning augments them (`augmentation`, None: finetune's default); its plot goes to `out`
    (default: RUN_DIR/lr_find.png). The run's model is read, never written."""
    if not 0 < start < end:
        raise TlcliError(f"--start {start:g} and --end {end:g}: the rates must grow from a positive start. "
                         "Use e.g. --start 1e-7 --end 1.")
    placement = place(distribution, data)
    run = read_run(source)
    spec = run_backbone(run)
    unfreezing = parse_unfreeze(unfreezing or spec.blocks[-1].name, spec)
    dataset, _ = run_dataset(run, data, strict)
    plot = claim_file(out if out is not None else run.path / LR_FIND_PLOT, suffix=".png", overwrite=overwrite,
                      default=out is None, data=(*dataset.places, *run.dataset_places), sources={run.model_location: "the run's model"},
                      own={"run": ("lr_find*.png",)})
    set_seed(fit.seed)
    model, run = load_placed_model(source, placement)
    base = find_base(model, spec)
    first = first_unfrozen_index(base, spec, unfreezing)
    unfreeze(base, first, train_batch_norm)
    augment = build_augmenter(fine_tuning_augmentation(augmentation, run), fit.seed)
    with model.distribute_strategy.scope():
        route = plan_route(model, base, spec, first, cache_features, unfreezing, augment is not None)
    if route.split is None:
        test_model, inputs = model, image_inputs(placement, dataset, run.image_size, fit, augment=augment)
    else:  # the stage's own cache, without the validation images the test does not read
        test_model = route.split.upper
        inputs, _ = cached_inputs(placement, dataset, route.split, run.image_size, fit, validation=False,
                                  memory_budget=int(cache_memory * 2**30),
                                  scratch_dir=None if isinstance(plot, Url) else plot.parent)
    if on_start is not None:
        on_start()
    try:
        test = range_test(test_model, inputs.endless(), fit, start=start, end=end, steps=steps)
    finally:
        inputs.close()
    if placement.is_chief:
        plot_range_test(test, plot)
        record_files(plot.parent, [plot.name])
    return RateFinding(run.path, unfreezing, test, plot if placement.is_chief else None)
