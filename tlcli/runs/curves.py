"""The run's plots: curves.png, loss and accuracy per epoch with a line where each fine-tuning
stage begins; penalty.png, a solved head's cross-validation scores against its penalty."""

from __future__ import annotations

import io
from pathlib import Path

from tlcli.runs.atomic import write_atomic


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


def plot_range_test(test, path: Path) -> None:
    """A learning-rate range test (training.range_test.RangeTest): each step's loss and the smoothed
    loss against the rate, the suggested rate marked (or the title saying none was found)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(test.rates, test.losses, color="lightgrey", label="loss of each step")
    axis.plot(test.rates, test.smoothed, color="tab:blue", label="smoothed loss")
    if test.suggestion is not None:
        axis.axvline(test.suggestion, color="tab:red", linestyle=":", label=f"suggested {test.suggestion:.2g}")
        title = f"Suggested rate {test.suggestion:.2g} ({test.rule} rule)"
    else:
        title = "The loss never rose: none suggested"
    if len(test.smoothed):
        low, high = min(test.smoothed), max(test.smoothed[0], min(test.smoothed) * 4)
        axis.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.1 * (high - low + 1e-12))
    axis.set_xscale("log")
    axis.set(xlabel="learning rate", ylabel="training loss", title=f"{title}; the test {test.stopped}")
    axis.legend()
    _save(figure, path)
