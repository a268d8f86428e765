"""curves.png: loss and accuracy per epoch, with a line where each fine-tuning stage begins."""

from __future__ import annotations

import io
from pathlib import Path

from tlcli.runs import write_atomic


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
