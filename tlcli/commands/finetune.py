from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import (
    BatchSize,
    CacheImages,
    CacheMemory,
    ClassWeight,
    Config,
    EarlyStopping,
    LabelSmoothing,
    LearningRate,
    Momentum,
    Nesterov,
    Optimizer,
    Out,
    Overwrite,
    Precision,
    Quiet,
    Resume,
    Schedule,
    Seed,
    StageCache,
    Strategy,
    Strict,
    Tpu,
    WeightDecay,
)
from tlcli.commands._settings import command_settings
from tlcli.distribute.placement import DistributeConfig
from tlcli.storage import location
from tlcli.training.config import FitConfig, split_fit_settings

NAME = "finetune"
_DEFAULTS = FitConfig(learning_rate=1e-5)  # early stopping: automatic (training.fit.fit_length)
_NOT_SETTINGS = {"strategy", "tpu", "precision", "ctx", "run_dir", "config", "overwrite", "resume", "quiet"}


def run(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(parser=location, help="The run directory of a `tlcli train` (or finetune) run.", metavar="RUN_DIR", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(parser=location, metavar="PATH", help="Dataset (default: the one recorded in the run).", show_default=False)] = None,
    stage: Annotated[Optional[list[str]], typer.Option(
        "--stage", help="UNFREEZE:EPOCHS:LEARNING_RATE, repeatable, run in order; UNFREEZE is a block name, "
        "a layer count (30), a share (25%) or all; LEARNING_RATE a number, or auto: found by a range test as "
        "the stage begins (see tlcli lr-find). Default: the top block for 3 epochs, then all for 2, both auto.",
        show_default=False)] = None,
    train_bn: Annotated[bool, typer.Option("--train-bn", help="Also train BatchNormalization scale and offset (statistics stay frozen).")] = False,
    out_dir: Out = None,
    optimizer: Optimizer = _DEFAULTS.optimizer,
    learning_rate: LearningRate = _DEFAULTS.learning_rate,
    momentum: Momentum = _DEFAULTS.momentum,
    nesterov: Nesterov = _DEFAULTS.nesterov,
    schedule: Schedule = _DEFAULTS.schedule,
    batch_size: BatchSize = _DEFAULTS.batch_size,
    label_smoothing: LabelSmoothing = _DEFAULTS.label_smoothing,
    class_weight: ClassWeight = _DEFAULTS.class_weight,
    early_stopping: EarlyStopping = _DEFAULTS.early_stopping,
    weight_decay: WeightDecay = _DEFAULTS.weight_decay,
    seed: Seed = _DEFAULTS.seed,
    cache_images: CacheImages = True,
    strict: Strict = False,
    cache_features: StageCache = True,
    cache_memory: CacheMemory = 2.0,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    precision: Precision = "float32",
    config: Config = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Fine-tune a trained run in stages, unfreezing the backbone from the top, into a new run."""
    given = locals()
    renamed = {"out_dir": "out", "stage": "stages", "train_bn": "train_batch_norm"}
    settings = command_settings(ctx, given, _NOT_SETTINGS, renamed, config, section="finetune")
    settings["stages"] = settings["stages"] or ()
    rest, fit = split_fit_settings(settings)

    from tlcli.commands._render import ConsoleEvents, print_summary
    from tlcli.training.finetune import FinetuneConfig, finetune

    outcome = finetune(FinetuneConfig(source=run_dir, fit=fit, **rest), distribution=DistributeConfig(strategy, tpu, precision), overwrite=overwrite,
        resume=resume, events=ConsoleEvents(quiet))
    print_summary(outcome.run_dir, outcome.metrics, outcome.route)
