"""The run's plots: curves.png, loss and accuracy per epoch with a line where each fine-tuning
stage begins; penalty.png, a solved head's cross-validation scores against its penalty."""

from __future__ import annotations

import io
from pathlib import Path

from tlcli.runs.directory import write_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    plt = _pyplot()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def plot_curves(rows: list[dict], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()

    epochs = [int(row["epoch"]) for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [float(row[prefix + metric]) if row.get(prefix + metric) else None for row in rows]
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                axis.plot(*zip(*points), style, marker="o", label=f"{prefix}{metric}".replace("_", " "))
        for previous, row in zip(rows, rows[1:]):
            if row["stage"] != previous["stage"]:
                axis.axvline(int(previous["epoch"]) + 0.5, color="grey", linestyle=":")
                axis.text(int(row["epoch"]), axis.get_ylim()[1], row["stage"], fontsize=8, va="top")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    _save(figure, path)


def plot_penalty_path(solution, path: Path) -> None:
    """Cross-validated accuracy and log loss against C (a LinearSolution's path), the chosen C
    marked; nothing when the penalty was not cross-validated."""
    if not solution.path:
        return
    plt = _pyplot()
    penalties = [point["C"] for point in solution.path]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, title in zip(axes, ("cv_accuracy", "cv_log_loss"), ("accuracy", "log loss")):
        axis.plot(penalties, [point[key] for point in solution.path], marker="o")
        axis.axvline(solution.penalty, color="grey", linestyle=":", label=f"chosen C = {solution.penalty:.3g}")
        axis.set_xscale("log")
        axis.set_xlabel("C (inverse L2 penalty; right: weaker)")
        axis.set_title(f"{solution.folds}-fold cross-validated {title}")
        axis.legend()
    _save(figure, path)
