from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from dataclasses import asdict
from typing import Annotated

import typer

from tlcli.commands._groups import Distribution, takes_option_groups
from tlcli.commands._options import ReplicaBatchSize, RunPath, Tta, TtaViews, chosen_views
from tlcli.commands._render import ConsoleEvents, show_worker_note
from tlcli.commands._config_file import given_on_command_line
from tlcli.console import err, literal, out
from tlcli.errors import TlcliError

NAME = "predict"


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@takes_option_groups
def run(
    ctx: typer.Context,
    model: RunPath,
    paths: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (searched recursively) or quoted globs ('photos/**/*.jpg').",
                       metavar="PATH...", show_default=False),
    ],
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Output on stdout.")] = OutputFormat.table,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per image, most probable first.", min=1)] = 3,
    tta: Tta = False,
    tta_views: TtaViews = None,
    batch_size: ReplicaBatchSize = 32,
    distribution: Distribution = Distribution(),
) -> None:
    """Predict the classes of images: the top-k classes with probabilities, per image (for a
    multi-label run, the labels over their thresholds, with every label's probability)."""
    from tlcli.inference.predict import PredictConfig, predict

    config = PredictConfig(
        model=model, paths=tuple(paths), top_k=top_k if "top_k" in given_on_command_line(ctx) else None,
        tta=chosen_views(tta, tta_views), batch_size=batch_size, **asdict(distribution),
    )
    predictions = predict(config, ConsoleEvents())
    writer = _writer(predictions, output_format)
    for row in predictions:
        writer.write(row)
    writer.close()
    skipped = f"; skipped {predictions.skipped} unreadable file(s)." if predictions.skipped else "."
    err.print(f"Predicted {predictions.predicted} image(s){skipped}")
    if not predictions.predicted:
        raise TlcliError(f"None of the {predictions.files} file(s) could be read as an image. Check the paths.")


def _writer(predictions, output_format: OutputFormat) -> _Writer:
    """Where the rows go: stdout as asked, on the chief; nowhere on the other workers of a cluster."""
    if not predictions.placement.is_chief:  # every worker predicts its share; the chief writes them all
        show_worker_note(predictions.placement, "the chief writes the predictions.")
        return _Discard(sys.stdout, False, predictions.fields)
    # Rich sends sys.stdout to its (stderr) console while a bar runs on a terminal; keep the real
    # stdout for piped CSV and JSON, and let the bar print rows above itself on a terminal.
    if predictions.multi_label and output_format == OutputFormat.table:
        return _LabelsTableWriter(sys.stdout, sys.stdout.isatty(), predictions.fields)
    return _WRITERS[output_format](sys.stdout, sys.stdout.isatty(), predictions.fields)


class _Writer:
    def __init__(self, stream, to_terminal: bool, fields: list[str]):
        self._stream, self._to_terminal, self.fields = stream, to_terminal, fields
        self.start()

    @property
    def stream(self):
        return sys.stdout if self._to_terminal else self._stream

    def start(self) -> None:
        pass

    def write(self, row: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class _Discard(_Writer):
    def write(self, row: dict) -> None:
        pass


class _CsvWriter(_Writer):
    def start(self) -> None:
        self._write_values(self.fields)

    def write(self, row: dict) -> None:
        # A multi-label row's labels are a list: space-separated here, as label files write them.
        self._write_values([" ".join(row[field]) if isinstance(row[field], list) else row[field]
                            for field in self.fields])

    def _write_values(self, values) -> None:
        csv.writer(self.stream, lineterminator="\n").writerow(values)


class _JsonWriter(_Writer):
    """A JSON list written one object at a time, so that nothing waits for the last image."""

    def start(self) -> None:
        self._count = 0

    def write(self, row: dict) -> None:
        self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + json.dumps(row))
        self._count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self._count == 0 else "\n]\n")
        super().close()


class _TableWriter(_Writer):
    """A rich table after the last image (it needs every row to size its columns)."""

    def start(self) -> None:
        self._rows = []

    def write(self, row: dict) -> None:
        values = [row[field] for field in self.fields]
        ranked = [f"{literal(name)} {probability:.1%}" for name, probability in zip(values[1::2], values[2::2])]
        self._rows.append([literal(values[0]), *ranked])

    def close(self) -> None:
        from rich.table import Table

        table = Table()
        table.add_column("path", overflow="fold", min_width=16)
        for rank in range(1, (len(self.fields) - 1) // 2 + 1):
            table.add_column("prediction" if rank == 1 else f"top {rank}", no_wrap=True)
        for row in self._rows:
            table.add_row(*row)
        out.print(table)


class _LabelsTableWriter(_Writer):
    """A multi-label run's table: each image's labels over threshold, with their probabilities."""

    def start(self) -> None:
        self._rows = []

    def write(self, row: dict) -> None:
        shown = ", ".join(f"{literal(name)} {row[f'probability_{name}']:.1%}" for name in row["labels"])
        self._rows.append([literal(row["path"]), shown or "[dim](none)[/]"])

    def close(self) -> None:
        from rich.table import Table

        table = Table()
        table.add_column("path", overflow="fold", min_width=16)
        table.add_column("labels over threshold")
        for row in self._rows:
            table.add_row(*row)
        out.print(table)


_WRITERS = {OutputFormat.table: _TableWriter, OutputFormat.csv: _CsvWriter, OutputFormat.json: _JsonWriter}
