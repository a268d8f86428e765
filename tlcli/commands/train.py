from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.commands._options import (
    AllowOutsidePaths,
    AugmentPreset,
    BatchSize,
    Brightness,
    CacheImages,
    ClassWeight,
    Config,
    Contrast,
    Crop,
    DataPath,
    EarlyStopping,
    Epochs,
    Flip,
    Hue,
    ImageSize,
    LabelColumns,
    LabelDelimiter,
    Labels,
    LabelSmoothing,
    LearningRate,
    ModelName,
    Momentum,
    MultiLabel,
    Nesterov,
    Noise,
    Optimizer,
    Out,
    Overwrite,
    Precision,
    Quiet,
    Resume,
    Rotation,
    Saturation,
    Schedule,
    Seed,
    Strategy,
    Strict,
    TestSplit,
    Tpu,
    Translation,
    ValSplit,
    WeightDecay,
    Weights,
    Zoom,
)
from tlcli.commands._render import ConsoleEvents, print_summary
from tlcli.commands._settings import command_settings, given_on_command_line
from tlcli.console import err
from tlcli.distribute.placement import DistributeConfig
from tlcli.training.config import FitConfig, TrainConfig, parse_dense, split_fit_settings

NAME = "train"

# Settings a --config file may hold: every option below except the per-invocation ones.
_AUGMENT_FLAGS = ("rotation", "translation", "zoom", "flip", "crop", "brightness", "contrast", "saturation", "hue", "noise")
_NOT_SETTINGS = {"augment", *_AUGMENT_FLAGS, "strategy", "tpu", "precision", "ctx", "data", "config", "overwrite", "resume", "quiet"}


def run(
    ctx: typer.Context,
    data: DataPath,
    model: ModelName = "resnet50",
    out_dir: Out = None,
    weights: Weights = "imagenet",
    image_size: ImageSize = None,
    pooling: Annotated[str, typer.Option(help="avg|max|flatten: how the feature map becomes a vector.")] = "avg",
    dense: Annotated[Optional[str], typer.Option(help="Hidden dense layers of the head, e.g. 256 or 512,128.  [default: none]", show_default=False)] = None,
    activation: Annotated[str, typer.Option(help="Hidden-layer activation: relu|leaky_relu|elu|selu|gelu|tanh|sigmoid.")] = "relu",
    dropout: Annotated[float, typer.Option(help="Dropout rate in the head.")] = 0.0,
    optimizer: Optimizer = FitConfig.optimizer,
    learning_rate: LearningRate = FitConfig.learning_rate,
    momentum: Momentum = FitConfig.momentum,
    nesterov: Nesterov = FitConfig.nesterov,
    schedule: Schedule = FitConfig.schedule,
    epochs: Epochs = FitConfig.epochs,
    batch_size: BatchSize = FitConfig.batch_size,
    label_smoothing: LabelSmoothing = FitConfig.label_smoothing,
    class_weight: ClassWeight = FitConfig.class_weight,
    early_stopping: EarlyStopping = FitConfig.early_stopping,
    weight_decay: WeightDecay = FitConfig.weight_decay,
    seed: Seed = FitConfig.seed,
    val_split: ValSplit = 0.2,
    test_split: TestSplit = 0.0,
    cache_features: Annotated[bool, typer.Option("--cache-features/--no-cache-features", help="Compute the frozen backbone's features once and train the head on them.")] = True,
    cache_images: CacheImages = True,
    head_solver: Annotated[str, typer.Option(help="auto|lbfgs|gradient. auto: a head without hidden layers on cached features is solved (logistic regression, penalty cross-validated); others are trained by gradient.")] = "auto",
    strict: Strict = False,
    labels: Labels = None,
    label_columns: LabelColumns = None,
    allow_outside_paths: AllowOutsidePaths = False,
    multi_label: MultiLabel = False,
    label_delimiter: LabelDelimiter = " ",
    augment: AugmentPreset = None,
    rotation: Rotation = None,
    translation: Translation = None,
    zoom: Zoom = None,
    flip: Flip = None,
    crop: Crop = None,
    brightness: Brightness = None,
    contrast: Contrast = None,
    saturation: Saturation = None,
    hue: Hue = None,
    noise: Noise = None,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    precision: Precision = "float32",
    config: Config = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Train a new head on a frozen backbone (feature-extraction transfer learning)."""
    given = locals()
    settings = command_settings(ctx, given, _NOT_SETTINGS, {"out_dir": "out"}, config, tables=("augmentation",))
    settings["dense"] = parse_dense(settings["dense"])
    rest, fit = split_fit_settings(settings)
    train_config = TrainConfig(data=data, fit=fit, **rest)

    from tlcli.augment.settings import augmentation_from_options
    from tlcli.training.train import SOLVED, head_route, train

    augmentation = augmentation_from_options(augment, {flag: given[flag] for flag in _AUGMENT_FLAGS}, config)
    if not quiet and head_route(train_config, augmentation)[0] == SOLVED:
        _note_unused(given_on_command_line(ctx) & _GRADIENT_ONLY)

    outcome = train(train_config, augmentation=augmentation, distribution=DistributeConfig(strategy, tpu, precision),
                    overwrite=overwrite, resume=resume, events=ConsoleEvents(quiet))
    print_summary(outcome.run_dir, outcome.metrics, outcome.route)


# Settings that only gradient training reads.
_GRADIENT_ONLY = {"optimizer", "learning_rate", "momentum", "nesterov", "schedule", "epochs", "early_stopping"}


def _note_unused(names: set[str]) -> None:
    if names:
        options = ", ".join(sorted(f"--{name.replace('_', '-')}" for name in names))
        err.print(f"Note: the linear head is solved, not trained, so {options} play(s) no part; "
                  "add --head-solver gradient to train it by gradient.", markup=False)
