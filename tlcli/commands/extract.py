from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tlcli.commands._groups import Distribution, MultiLabelOptions, SeededSplitOptions, takes_option_groups
from tlcli.commands._options import (
    DataPath,
    ImageSize,
    ModelName,
    Quiet,
    ReplicaBatchSize,
    Strict,
    Weights,
)
from tlcli.commands._render import ConsoleEvents, show_worker_note
from tlcli.console import err, literal, out
from tlcli.storage import location

NAME = "extract"
_SHOWN_PROBLEMS = 10

FeaturesOut = Annotated[
    Path,
    typer.Option("--out", "-o", parser=location, metavar="PATH", help="The features file to write (.npz, readable with numpy.load(..., allow_pickle=False)).",
                 show_default=False),
]


@takes_option_groups
def run(
    data: DataPath,
    features_out: FeaturesOut,
    model: ModelName = "resnet50",
    weights: Weights = "imagenet",
    image_size: ImageSize = None,
    pooling: Annotated[str, typer.Option(help="avg|max: how the feature map becomes a vector.")] = "avg",
    batch_size: ReplicaBatchSize = 32,
    split: SeededSplitOptions = SeededSplitOptions(),
    strict: Strict = False,
    labels: MultiLabelOptions = MultiLabelOptions(),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing features file.")] = False,
    distribution: Distribution = Distribution(),
    quiet: Quiet = False,
) -> None:
    """Extract a frozen backbone's features for every image into one .npz file (features, labels, splits, paths)."""
    from tlcli.inference.extract import ExtractConfig, extract_dataset

    config = ExtractConfig(
        data=data, model=model, out=features_out, weights=weights, image_size=image_size, pooling=pooling,
        batch_size=batch_size, **asdict(split), strict=strict,
        overwrite=overwrite, **asdict(labels), **asdict(distribution),
    )
    result = extract_dataset(config, ConsoleEvents(quiet))
    if not result.placement.is_chief:
        show_worker_note(result.placement, f"the chief writes {features_out}.")
        return
    for problem in result.skipped[:_SHOWN_PROBLEMS]:
        err.print(f"[yellow]Skipped[/] {literal(problem.path)}: {literal(problem.reason)}")
    if len(result.skipped) > _SHOWN_PROBLEMS:
        err.print(f"[yellow]... and {len(result.skipped) - _SHOWN_PROBLEMS} more skipped file(s)[/]; `tlcli inspect` lists all.")
    print_summary(result)


def print_summary(result) -> None:
    from rich.table import Table

    table = Table(title="Features written", show_header=False)
    table.add_row("file", literal(result.out))
    table.add_row("images", f"{result.images} x {result.feature_size} features")
    table.add_row("skipped files", str(len(result.skipped)))
    table.add_row("speed", f"{result.images_per_second:.1f} images/s ({result.seconds:.1f} s)")
    if result.first_batch_seconds is not None:
        table.add_row("first batch", f"{result.first_batch_seconds:.1f} s after the command started")
    out.print(table)
