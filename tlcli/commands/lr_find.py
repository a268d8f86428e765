from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._groups import Distribution, FineTuningAugmentation, takes_option_groups
from tlcli.commands._options import (
    CacheMemory,
    Json,
    Optimizer,
    Overwrite,
    ReplicaBatchSize,
    Seed,
    StageCache,
    Strict,
    TrainedRunPath,
)
from tlcli.commands._render import ConsoleEvents
from tlcli.console import literal, out, print_json
from tlcli.storage import location

NAME = "lr-find"


@takes_option_groups
def run(
    model: TrainedRunPath,
    unfreeze: Annotated[Optional[str], typer.Option(
        help="The stage's unfreezing: a block name, a layer count (30), a share (25%) or all.",
        show_default="the top block")] = None,
    data: Annotated[Optional[Path], typer.Option(parser=location, metavar="PATH", help="Dataset.",
                                                 show_default="the one recorded in the run")] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps, one rate each.", min=5)] = 100,
    start: Annotated[float, typer.Option(help="The first rate.")] = 1e-7,
    end: Annotated[float, typer.Option(help="The last rate, if the loss has not blown up before.")] = 1.0,
    optimizer: Optimizer = "adam",
    batch_size: ReplicaBatchSize = 32,
    train_bn: Annotated[bool, typer.Option("--train-bn", help="Also train BatchNormalization scale and offset, "
                                           "as finetune --train-bn does.")] = False,
    out_path: Annotated[Optional[Path], typer.Option("--out", parser=location, metavar="PATH", help="The plot.",
                                                     show_default="lr_find.png in the run directory")] = None,
    overwrite: Overwrite = False,
    seed: Seed = 0,
    strict: Strict = False,
    cache_features: StageCache = True,
    cache_memory: CacheMemory = 2.0,
    augmentation: FineTuningAugmentation = FineTuningAugmentation(),
    distribution: Distribution = Distribution(),
    as_json: Json = False,
) -> None:
    """Find a fine-tuning learning rate: the range test of a stage's unfreezing, plotted, with a suggested rate."""
    from tlcli.training.lr_find import LrFindConfig, find_learning_rate

    config = LrFindConfig(
        model=model, unfreeze=unfreeze, data=data, steps=steps, start=start, end=end, optimizer=optimizer,
        batch_size=batch_size, seed=seed, out=out_path, overwrite=overwrite, train_batch_norm=train_bn, strict=strict,
        cache_features=cache_features, cache_memory=cache_memory, distribution=distribution,
        augmentation=augmentation.chosen(),
    )
    found = find_learning_rate(config, ConsoleEvents())
    test = found.test
    if as_json:
        print_json({"run_dir": str(found.run), "unfreeze": found.unfreeze, "plot": found.plot and str(found.plot),
                    **test.to_dict()})
        return
    where = f" Plot: {literal(found.plot)}." if found.plot else ""
    if test.suggestion is None:
        out.print(f"The training loss of {literal(found.unfreeze)} did not rise to three times its lowest over "
                  f"{len(test.rates)} steps from {test.rates[0]:.2g} to {test.rates[-1]:.2g} (the test {test.stopped}), "
                  f"or rose at once, so no rate is suggested: try a wider --start/--end.{where}")
        return
    out.print(f"Suggested learning rate for {literal(found.unfreeze)}: [bold]{test.suggestion:.2g}[/] "
              f"({test.rule} rule: a third of the rate at which the loss rose to three times its lowest; the test {test.stopped} "
              f"after {len(test.rates)} steps).{where}")
    out.print(f"Use it with: tlcli finetune {literal(found.run)} --stage {literal(found.unfreeze)}:auto:{test.suggestion:.2g}"
              f"  (or --stage {literal(found.unfreeze)}:auto:auto)")
