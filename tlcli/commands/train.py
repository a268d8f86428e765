from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from tlcli.commands._groups import (
    Augmentation,
    Distribution,
    HeadOptions,
    MultiLabelOptions,
    SplitOptions,
    TrainFitOptions,
    takes_option_groups,
)
from tlcli.commands._options import CacheImages, DataPath, Out, Overwrite, Quiet, Resume, Strict, dense_option
from tlcli.commands._render import ConsoleEvents, print_summary
from tlcli.commands._config_file import config_option, given_on_command_line
from tlcli.console import err

NAME = "train"


# A --config file may set every option but the per-invocation ones, augmentation in its own table.
Config = config_option(exclude=("overwrite", "resume", "quiet", Distribution), tables={"augmentation": Augmentation},
                       forms={"dense": dense_option})


@takes_option_groups
def run(
    ctx: typer.Context,
    data: DataPath,
    head: HeadOptions = HeadOptions(),
    out: Out = None,
    fit: TrainFitOptions = TrainFitOptions(),
    split: SplitOptions = SplitOptions(),
    strict: Strict = False,
    cache_features: Annotated[bool, typer.Option("--cache-features/--no-cache-features", help="Compute the frozen backbone's features once and fit the head on them; with augmentation, which changes the images every epoch, the head trains end to end instead.")] = True,
    cache_images: CacheImages = True,
    labels: MultiLabelOptions = MultiLabelOptions(),
    augmentation: Augmentation = Augmentation(),
    distribution: Distribution = Distribution(),
    config: Config = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Train a new head on a frozen backbone (feature-extraction transfer learning)."""
    from tlcli.training.train import SOLVED, TrainConfig, head_route, train

    train_config = TrainConfig(data=data, out=out, **head.settings(), **asdict(split), strict=strict,
                               cache_features=cache_features, cache_images=cache_images, fit=fit.config(),
                               **asdict(labels))
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
