"""How the commands show what the library returns: tables and summaries, drawn only here."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tlcli.console import err, literal, out, progress
from tlcli.events import DETAIL, INFO, WARNING, Events, StageStart


def print_summary(run_dir: Path, metrics: dict, route: str) -> None:
    from rich.table import Table

    table = Table(title="Training finished", show_header=False)
    table.add_row("run directory", literal(run_dir))
    table.add_row("route", route)
    solver = metrics.get("solver")
    if solver and solver.get("one_vs_rest"):
        penalties = [f"{label['penalty_C']:.3g}" if label else "-" for label in solver["per_label"]]
        table.add_row("L2 penalty", f"C per label (one-vs-rest): {', '.join(penalties)}")
    elif solver:
        chosen = f"C = {solver['penalty_C']:.3g}"
        if solver["folds"]:
            chosen += f" ({solver['folds']}-fold cross-validated accuracy {solver['cv_accuracy']:.4f})"
        table.add_row("L2 penalty", chosen)
    else:
        table.add_row("best epoch", f"{metrics['best_epoch']} of {metrics['epochs_run']}")
    if "val_loss" in metrics:
        table.add_row("val loss", f"{metrics['val_loss']:.4f}")
        table.add_row("val accuracy" + (" (per label)" if "thresholds" in metrics else ""),
                      f"{metrics['val_accuracy']:.4f}")
    if "thresholds" in metrics:
        table.add_row("thresholds", ", ".join(f"{literal(name)} {value:.3f}" for name, value in metrics["thresholds"].items()))
    table.add_row("time", f"{metrics['seconds']:.1f} s")
    table.add_row("weights sha256", metrics["weights_sha256"][:16])
    out.print(table)


def show_placement(placement, batch_size: int) -> None:
    """One line on where the work runs and how batches are shared."""
    where = ", ".join(placement.devices)
    workers = f", worker {placement.worker_index + 1} of {placement.num_workers}" if placement.num_workers > 1 else ""
    err.print(
        f"Strategy {placement.name}: {placement.replicas} replica(s) on {where}{workers}; "
        f"batch {batch_size} per replica, {placement.global_batch(batch_size)} global; {placement.precision}.",
        markup=False,
    )


def show_dataset(dataset) -> None:
    """The splits' sizes, the files skipped and the dataset's notes."""
    sizes = ", ".join(f"{split} {len(samples)}" for split, samples in dataset.splits.items())
    err.print(f"{len(dataset.class_names)} classes; images: {sizes}.")
    if dataset.problems:
        err.print(
            f"[yellow]Skipping {len(dataset.problems)} unusable file(s)[/] "
            f"(e.g. {literal(dataset.problems[0].path)}: {literal(dataset.problems[0].reason)}); "
            "`tlcli inspect` lists all."
        )
    for note in dataset.notes:
        err.print(f"[dim]{literal(note)}[/]")


def show_worker_note(placement, what: str) -> None:
    """A worker other than the chief says who reports for the cluster."""
    err.print(f"Worker {placement.worker_index + 1} of {placement.num_workers}: {what}", markup=False)


class ConsoleEvents(Events):
    """Shows a workflow's events on stderr (and stage tables on stdout); nothing with `quiet`.
    A worker other than the chief shows one line saying so, then nothing more."""

    STYLES = {INFO: "{}", DETAIL: "[dim]{}[/]", WARNING: "[yellow]{}[/]"}

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def placed(self, placement, batch_size: int) -> None:
        if self.quiet:
            return
        show_placement(placement, batch_size)
        if not placement.is_chief:
            show_worker_note(placement, "the chief reports the progress.")
            self.quiet = True

    def dataset(self, dataset) -> None:
        if not self.quiet:
            show_dataset(dataset)

    def note(self, message: str, level: str = INFO) -> None:
        if not self.quiet:
            err.print(self.STYLES[level].format(literal(message)))

    def skipped(self, what: Path | str, reason: str) -> None:
        if not self.quiet:
            err.print(f"[yellow]Skipped[/] {literal(what)}: {literal(reason)}")

    def stage(self, stage: StageStart) -> None:
        if self.quiet:
            return
        from rich.table import Table

        table = Table(title=f"Stage {stage.number}", caption=f"route: {literal(stage.route)}")
        rate = f"{stage.learning_rate:.2g}" + ("" if stage.rate_source == "given" else f" ({stage.rate_source})")
        for column in ("unfrozen", "trainable params", "frozen params", "learning rate", "epochs"):
            # The rate's source in full (--learning-rate, found, fallback): a narrow terminal wraps the others.
            table.add_column(column, min_width=max(map(len, rate.split())) if column == "learning rate" else None)
        table.add_row(
            f"{literal(stage.unfreeze)} (layers {stage.first_layer}-{stage.layer_count - 1} of {stage.layer_count})",
            f"{stage.trainable_parameters:,}",
            f"{stage.frozen_parameters:,}",
            rate,
            str(stage.epochs),
        )
        out.print(table)

    def fit_progress(self, epochs: int, steps: int, stage: str):
        if self.quiet:
            return None
        from tlcli.commands._progress import RichProgress

        return RichProgress(epochs, steps, stage)

    @contextlib.contextmanager
    def counting(self, description: str, total: int | None, rate: str | None = None):
        if self.quiet:
            yield lambda count: None
            return
        bar, advance = progress(description, total, rate=rate)
        with bar:
            yield advance
