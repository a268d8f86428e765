from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import Distribution, FinetuneFitOptions, FineTuningAugmentation, takes_option_groups
from tlcli.commands._options import (
    CacheImages,
    CacheMemory,
    FinetuneOut,
    Overwrite,
    Quiet,
    Resume,
    StageCache,
    Strict,
    rate_option,
)
from tlcli.commands._render import ConsoleEvents, print_summary
from tlcli.commands._config_file import config_option
from tlcli.storage import location

NAME = "finetune"

# A --config file may set every option but the per-invocation ones, at its top or in a [finetune]
# table (then the top, where a train's settings may sit, is not read).
Config = config_option(exclude=("overwrite", "resume", "quiet", Distribution), section="finetune",
                       tables={"augmentation": FineTuningAugmentation}, forms={"learning_rate": rate_option})


@takes_option_groups
def run(
    run_dir: Annotated[Path, typer.Argument(parser=location, help="The run directory of a `tlcli train` (or finetune) run.", metavar="RUN_DIR", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(parser=location, metavar="PATH", help="Dataset.", show_default="the one recorded in the run")] = None,
    stages: Annotated[Optional[list[str]], typer.Option(
        "--stage", help="UNFREEZE:EPOCHS:LEARNING_RATE, repeatable, run in order; UNFREEZE is a block name, "
        "a layer count (30), a share (25%) or all; EPOCHS a number, or auto: about 500 optimiser steps (3 to 20 "
        "epochs), with early stopping (--early-stopping); LEARNING_RATE a number, or auto: --learning-rate's.",
        show_default="the top block, then all, both auto:auto")] = None,
    train_batch_norm: Annotated[bool, typer.Option("--train-bn", help="Also train BatchNormalization scale and offset (statistics stay frozen).")] = False,
    out: FinetuneOut = None,
    fit: FinetuneFitOptions = FinetuneFitOptions(),
    cache_images: CacheImages = True,
    strict: Strict = False,
    cache_features: StageCache = True,
    cache_memory: CacheMemory = 2.0,
    augmentation: FineTuningAugmentation = FineTuningAugmentation(),
    distribution: Distribution = Distribution(),
    config: Config = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Fine-tune a trained run in stages, unfreezing the backbone from the top, into a new run. The training
    images are augmented: as the source run's were, else with the shift preset (--augment none: not at all)."""
    from tlcli.training.finetune import FinetuneConfig, finetune

    finetune_config = FinetuneConfig(
        source=run_dir, data=data, out=out, stages=stages or (), train_batch_norm=train_batch_norm, strict=strict,
        cache_features=cache_features, cache_memory=cache_memory, cache_images=cache_images, fit=fit.config())
    outcome = finetune(finetune_config, augmentation=augmentation.chosen(), distribution=distribution,
                       overwrite=overwrite, resume=resume, events=ConsoleEvents(quiet))
    print_summary(outcome.run_dir, outcome.metrics, outcome.route)
