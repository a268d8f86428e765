from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.commands._options import BatchSize, Json, TrainedRunPath
from tlcli.commands._render import ConsoleEvents
from tlcli.console import literal, out, print_json
from tlcli.storage import location

NAME = "calibrate"


def run(
    model: TrainedRunPath,
    data: Annotated[Optional[Path], typer.Option(
        "--data", parser=location, help="The run's dataset, if it has moved since training.", show_default=False)] = None,
    batch_size: BatchSize = 32,
    as_json: Json = False,
) -> None:
    """Calibrate a run's probabilities by temperature scaling, fitted on its validation images; the top class never changes."""
    from tlcli.inference.calibrate import CalibrateConfig, calibrate

    result = calibrate(CalibrateConfig(model, data, batch_size), ConsoleEvents())
    if as_json:
        print_json({"run_dir": str(result.run_dir), "temperature": result.temperature, "images": result.images,
                    "before": result.before, "after": result.after, "applied": result.applied})
        return
    from rich.table import Table

    table = Table(title=f"Temperature fitted on {result.images} validation images: {result.temperature:.4g}")
    for column in ("", "ECE", "Brier", "log loss"):
        table.add_column(column, justify="right")
    for name, scores in (("before", result.before), ("after", result.after)):
        table.add_row(name, f"{scores['ece']:.4f}", f"{scores['brier']:.4f}", f"{scores['log_loss']:.4f}")
    out.print(table)
    if not result.applied:
        out.print(f"{literal(result.model_path)} is unchanged: the best temperature lowers the validation log loss by "
                  "less than 1%, so its probabilities are as calibrated as these images can tell.")
        return
    out.print(f"{literal(result.model_path)} now gives calibrated probabilities (exports too).")
