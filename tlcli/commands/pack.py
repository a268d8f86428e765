from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tlcli.commands._groups import LabelOptions, SeededSplitOptions, takes_option_groups
from tlcli.commands._options import DataPath, Overwrite, Quiet, Strict
from tlcli.commands._render import ConsoleEvents
from tlcli.console import literal, out
from tlcli.storage import location

NAME = "pack"

PackOut = Annotated[
    Path,
    typer.Option("--out", "-o", parser=location, metavar="PATH", help="The folder to write the shards and their index into (new, or empty).",
                 show_default=False),
]
ShardMegabytes = Annotated[
    float, typer.Option("--shard-mb", help="Size of each shard in megabytes (TPU input pipelines want 100-200).")
]


@takes_option_groups
def run(
    data: DataPath,
    pack_out: PackOut,
    shard_mb: ShardMegabytes = 150,
    split: SeededSplitOptions = SeededSplitOptions(),
    strict: Strict = False,
    labels: LabelOptions = LabelOptions(),
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Pack a dataset's checked images and their split into TFRecord shards, which every command reads as DATA."""
    from tlcli.data.pack import PackConfig, pack

    config = PackConfig(data=data, out=pack_out, shard_mb=shard_mb, **asdict(split), strict=strict, overwrite=overwrite,
                        **asdict(labels))
    outcome = pack(config, ConsoleEvents(quiet))
    records = ", ".join(f"{split} {count}" for split, count in outcome.records.items())
    out.print(f"Packed {sum(outcome.records.values())} image(s) ({literal(records)}) into {outcome.shards} shard(s), "
              f"{outcome.bytes / 1e6:.1f} MB, in {literal(str(outcome.out))}.", highlight=False)
    if outcome.problems:
        out.print(f"[yellow]{outcome.problems} file(s) could not be used and were left out[/]; "
                  "`tlcli inspect` on the pack or the folder lists them.")
