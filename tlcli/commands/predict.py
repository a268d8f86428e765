from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from typing import Annotated

import typer

from tlcli.commands._options import BatchSize, Precision, RunPath, Strategy, Tpu, Tta, TtaViews, chosen_views
from tlcli.commands._settings import given_on_command_line
from tlcli.console import err, literal, out, progress
from tlcli.errors import TlcliError

NAME = "predict"


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


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
    batch_size: BatchSize = 32,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    precision: Precision = "float32",
) -> None:
    """Predict the classes of images: the top-k classes with probabilities, per image (for a
    multi-label run, the labels over their thresholds, with every label's probability)."""
    from tlcli.commands._render import show_placement, show_worker_note
    from tlcli.data.images import Problem
    from tlcli.distribute.placement import DistributeConfig, place
    from tlcli.evaluate.predict import collect_image_files, predict_files, top_classes
    from tlcli.models.saved import load_placed_model
    from tlcli.models.tta import VIEW_SETS

    view_set = chosen_views(tta, tta_views)
    files = collect_image_files(paths)
    placement = place(DistributeConfig(strategy, tpu, precision), paths[0])  # before any model: multi-worker needs it so
    keras_model, info = load_placed_model(model, placement)
    if placement.name != "default":
        show_placement(placement, batch_size)
    thresholds = info.thresholds() if info.multi_label else None
    if thresholds is not None:
        fields = ["path", "labels", *(f"probability_{name}" for name in info.class_names)]
        if "top_k" in given_on_command_line(ctx):
            err.print("[dim]Note: --top-k does not apply to a multi-label run: each image shows the labels at or "
                      "over their thresholds.[/]")
    elif top_k > len(info.class_names):
        err.print(f"[dim]Note: --top-k {top_k} is more than the model's {len(info.class_names)} classes; "
                  f"showing all {len(info.class_names)}.[/]")
        top_k = len(info.class_names)
    if view_set is not None:
        err.print(f"Test-time augmentation: on ({literal(VIEW_SETS[view_set].describe())}).")
    if thresholds is None:
        fields = ["path", "prediction", "probability"]
        for rank in range(2, top_k + 1):
            fields += [f"class_{rank}", f"probability_{rank}"]
    # Rich sends sys.stdout to its (stderr) console while a bar runs on a terminal; keep the real
    # stdout for piped CSV and JSON, and let the bar print rows above itself on a terminal.
    if placement.is_chief and thresholds is not None and output_format == OutputFormat.table:
        writer = _LabelsTableWriter(sys.stdout, sys.stdout.isatty(), fields)
    elif placement.is_chief:
        writer = _WRITERS[output_format](sys.stdout, sys.stdout.isatty(), fields)
    else:  # every worker predicts its share; the chief writes them all
        show_worker_note(placement, "the chief writes the predictions.")
        writer = _Discard(sys.stdout, False, fields)

    predicted, skipped = 0, 0
    bar, advance = progress("Predicting", len(files))
    with bar:
        for result in predict_files(keras_model, files, info.image_size, batch_size, placement=placement,
                                    tta=view_set):
            advance()
            if isinstance(result, Problem):
                skipped += 1
                err.print(f"[yellow]Skipped[/] {literal(result.path)}: {literal(result.reason)}")
                continue
            predicted += 1
            if thresholds is not None:
                writer.write(_labels_row(result, info.class_names, thresholds))
                continue
            values = [str(result.path)]
            for name, probability in top_classes(result.probabilities, info.class_names, top_k):
                values += [name, round(probability, 6)]
            writer.write(dict(zip(fields, values)))
    writer.close()
    err.print(f"Predicted {predicted} image(s)" + (f"; skipped {skipped} unreadable file(s)." if skipped else "."))
    if not predicted:
        raise TlcliError(f"None of the {len(files)} file(s) could be read as an image. Check the paths.")


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


def _labels_row(result, class_names, thresholds: dict[str, float]) -> dict:
    """A multi-label prediction: the labels at or over their thresholds, most probable first,
    and every label's probability."""
    from tlcli.training.thresholds import decide

    decided = decide(result.probabilities[None], thresholds, class_names)[0]
    order = sorted(range(len(class_names)), key=lambda index: -result.probabilities[index])
    return {"path": str(result.path), "labels": [class_names[index] for index in order if decided[index]],
            **{f"probability_{name}": round(float(probability), 6)
               for name, probability in zip(class_names, result.probabilities)}}


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
