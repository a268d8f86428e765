"""How the commands show what the library returns: tables and summaries, drawn only here."""

from __future__ import annotations

from pathlib import Path

from tlcli.console import literal, out


def print_summary(run_dir: Path, metrics: dict, route: str) -> None:
    from rich.table import Table

    table = Table(title="Training finished", show_header=False)
    table.add_row("run directory", literal(run_dir))
    table.add_row("route", route)
    solver = metrics.get("solver")
    if solver:
        chosen = f"C = {solver['penalty_C']:.3g}"
        if solver["folds"]:
            chosen += f" ({solver['folds']}-fold cross-validated accuracy {solver['cv_accuracy']:.4f})"
        table.add_row("L2 penalty", chosen)
    else:
        table.add_row("best epoch", f"{metrics['best_epoch']} of {metrics['epochs_run']}")
    if "val_loss" in metrics:
        table.add_row("val loss", f"{metrics['val_loss']:.4f}")
        table.add_row("val accuracy", f"{metrics['val_accuracy']:.4f}")
    table.add_row("time", f"{metrics['seconds']:.1f} s")
    table.add_row("weights sha256", metrics["weights_sha256"][:16])
    out.print(table)
