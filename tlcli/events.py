"""What a long workflow tells its user as it runs, without drawing anything itself.

Every workflow a command calls reports through an `Events` object. A command passes one that
renders (`tlcli.commands._render.ConsoleEvents`); this base class, the library's default, shows
nothing. So `--quiet`, and "only the chief of a cluster prints", are decided in one place.
Below a workflow, a function that only counts (`check_images`, `extract_features`,
`predict_samples`, `load_dataset`) takes the plain `advance(n)` that `counting` gives, under
that one name: there is no other progress callback.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

INFO, DETAIL, WARNING = "info", "detail", "warning"


@dataclass(frozen=True)
class StageStart:
    """A fine-tuning stage about to run: what it unfreezes and trains."""

    number: int
    unfreeze: str
    first_layer: int
    layer_count: int
    trainable_parameters: int
    frozen_parameters: int
    learning_rate: float
    epochs: int
    rate_source: str = "given"  # or how the range test found it
    route: str = "end to end"  # or on the frozen part's output, computed once: where, and why


class Events:
    """The silent default: every report is dropped."""

    def placed(self, placement, batch_size: int) -> None:
        """Where the work runs (`tlcli.distribute.placement.Placement`), told before the rest."""

    def dataset(self, dataset) -> None:
        """The dataset that was read (`tlcli.data.dataset.Dataset`): splits, skipped files, notes."""

    def note(self, message: str, level: str = INFO) -> None:
        """One line for the user; `level` is INFO, DETAIL or WARNING. `message` is plain text."""

    def skipped(self, what: Path | str, reason: str) -> None:
        """Something asked for (a file, a class) was left out, and the work goes on without it."""

    def stage(self, stage: StageStart) -> None:
        """A fine-tuning stage begins."""

    def fit_progress(self, epochs: int, steps: int, stage: str):
        """A Keras callback that shows a fit's progress, or None."""
        return None

    @contextlib.contextmanager
    def counting(self, description: str, total: int | None, rate: str | None = None
                 ) -> Iterator[Callable[[int], None]]:
        """A context in which `advance(n)` reports n more of `total` items done (None: a total not
        known). With `rate`, the unit of the items (such as "images"), their speed is worth showing."""
        yield lambda count: None


SILENT = Events()  # the default of every workflow: report nothing
