from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tlcli.commands._options import (
    AllowOutsidePaths,
    DataPath,
    LabelColumns,
    Labels,
    Overwrite,
    Quiet,
    Seed,
    Strict,
    TestSplit,
    ValSplit,
)
from tlcli.console import literal, out, progress
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


def run(
    data: DataPath,
    pack_out: PackOut,
    shard_mb: ShardMegabytes = 150,
    val_split: ValSplit = 0.2,
    test_split: TestSplit = 0.0,
    seed: Seed = 0,
    strict: Strict = False,
    labels: Labels = None,
    label_columns: LabelColumns = None,
    allow_outside_paths: AllowOutsidePaths = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Pack a dataset's checked images and their split into TFRecord shards, which every command reads as DATA."""
    import dataclasses

    from tlcli.data.dataset import SplitOptions, count_files, discover
    from tlcli.data.labels import LabelFile
    from tlcli.data.pack import pack_dataset
    from tlcli.data.packed import INDEX, is_packed
    from tlcli.errors import TlcliError
    from tlcli.runs.remote import staged_output

    options = SplitOptions(val_split, test_split, seed)
    if is_packed(data):  # before the progress bar counts its class folders
        raise TlcliError(f"{data} is a packed dataset already. Pass the folder of images it was packed from.")
    label_file = LabelFile.parse(labels, label_columns, allow_outside_paths)
    # A URL --out is packed into a local folder, then published with its index just before the marker.
    with staged_output(pack_out, "pack", overwrite=overwrite, data=data, last=(INDEX,),
                       sources={labels: "the --labels file"} if labels is not None else None) as staged:
        if quiet:
            outcome = pack_dataset(data, staged.local, options, labels=label_file, shard_mb=shard_mb, strict=strict,
                                   overwrite=overwrite)
        else:
            # One bar for both passes (Rich shows one at a time): each file is checked, then each usable one packed.
            bar, advance = progress("Checking, then packing images", 2 * count_files(discover(data, label_file)))
            with bar:
                outcome = pack_dataset(data, staged.local, options, labels=label_file, shard_mb=shard_mb,
                                       strict=strict, overwrite=overwrite, on_checked=advance, on_packed=advance)
        outcome = dataclasses.replace(outcome, out=staged.public(outcome.out))
    records = ", ".join(f"{split} {count}" for split, count in outcome.records.items())
    out.print(f"Packed {sum(outcome.records.values())} image(s) ({literal(records)}) into {outcome.shards} shard(s), "
              f"{outcome.bytes / 1e6:.1f} MB, in {literal(str(outcome.out))}.", highlight=False)
    if outcome.problems:
        out.print(f"[yellow]{outcome.problems} file(s) could not be used and were left out[/]; "
                  "`tlcli inspect` on the pack or the folder lists them.")
