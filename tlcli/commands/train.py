from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from tlcli.commands._groups import Augmentation, Distribution, MultiLabelOptions, takes_option_groups
from tlcli.commands._options import (
    Activation,
    CacheImages,
    ClassWeight,
    DataPath,
    Dense,
    Dropout,
    EarlyStopping,
    Epochs,
    HeadSolver,
    ImageSize,
    LabelSmoothing,
    LearningRate,
    ModelName,
    Momentum,
    Nesterov,
    Optimizer,
    Out,
    Overwrite,
    Pooling,
    Quiet,
    ReplicaBatchSize,
    Resume,
    Schedule,
    Seed,
    Strict,
    TestSplit,
    ValSplit,
    WeightDecay,
    Weights,
    dense_option,
)
from tlcli.commands._render import ConsoleEvents, print_summary
from tlcli.commands._settings import config_option, given_on_command_line
from tlcli.console import err
from tlcli.training.config import FitConfig, TrainConfig, parse_dense

NAME = "train"


# A --config file may set every option but the per-invocation ones, augmentation in its own table.
Config = config_option(exclude=("overwrite", "resume", "quiet", Distribution), tables={"augmentation": Augmentation},
                       forms={"dense": dense_option})


@takes_option_groups
def run(
    ctx: typer.Context,
    data: DataPath,
    model: ModelName = "resnet50",
    out: Out = None,
    weights: Weights = "imagenet",
    image_size: ImageSize = None,
    pooling: Pooling = TrainConfig.pooling,
    dense: Dense = None,
    activation: Activation = TrainConfig.activation,
    dropout: Dropout = TrainConfig.dropout,
    optimizer: Optimizer = FitConfig.optimizer,
    learning_rate: LearningRate = FitConfig.learning_rate,
    momentum: Momentum = FitConfig.momentum,
    nesterov: Nesterov = FitConfig.nesterov,
    schedule: Schedule = FitConfig.schedule,
    epochs: Epochs = FitConfig.epochs,
    batch_size: ReplicaBatchSize = FitConfig.batch_size,
    label_smoothing: LabelSmoothing = FitConfig.label_smoothing,
    class_weight: ClassWeight = FitConfig.class_weight,
    early_stopping: EarlyStopping = FitConfig.early_stopping,
    weight_decay: WeightDecay = FitConfig.weight_decay,
    seed: Seed = FitConfig.seed,
    val_split: ValSplit = 0.2,
    test_split: TestSplit = 0.0,
    cache_features: Annotated[bool, typer.Option("--cache-features/--no-cache-features", help="Compute the frozen backbone's features once and fit the head on them; with augmentation, which changes the images every epoch, the head trains end to end instead.")] = True,
    cache_images: CacheImages = True,
    head_solver: HeadSolver = TrainConfig.head_solver,
    strict: Strict = False,
    labels: MultiLabelOptions = MultiLabelOptions(),
    augmentation: Augmentation = Augmentation(),
    distribution: Distribution = Distribution(),
    config: Config = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Train a new head on a frozen backbone (feature-extraction transfer learning)."""
    dense_layers = parse_dense(dense)
    fit = FitConfig(optimizer=optimizer, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                    schedule=schedule, epochs=epochs, batch_size=batch_size, label_smoothing=label_smoothing,
                    class_weight=class_weight, early_stopping=early_stopping, weight_decay=weight_decay, seed=seed)
    train_config = TrainConfig(
        data=data, model=model, out=out, weights=weights, image_size=image_size, pooling=pooling,
        dense=dense_layers, activation=activation, dropout=dropout, val_split=val_split, test_split=test_split,
        cache_features=cache_features, cache_images=cache_images, head_solver=head_solver, strict=strict, fit=fit,
        **asdict(labels))

    from tlcli.training.train import SOLVED, head_route, train

    augment_config = augmentation.config()
    if not quiet and head_route(train_config, augment_config)[0] == SOLVED:
        _note_unused(given_on_command_line(ctx) & _GRADIENT_ONLY)

    outcome = train(train_config, augmentation=augment_config, distribution=distribution, overwrite=overwrite, resume=resume,
                    events=ConsoleEvents(quiet))
    print_summary(outcome.run_dir, outcome.metrics, outcome.route)


# Settings that only gradient training reads.
_GRADIENT_ONLY = {"optimizer", "learning_rate", "momentum", "nesterov", "schedule", "epochs", "early_stopping"}


def _note_unused(names: set[str]) -> None:
    if names:
        options = ", ".join(sorted(f"--{name.replace('_', '-')}" for name in names))
        err.print(f"Note: the linear head is solved, not trained, so {options} play(s) no part; "
                  "add --head-solver gradient to train it by gradient.", markup=False)
