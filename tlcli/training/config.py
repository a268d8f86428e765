"""Resolved settings for training and fine-tuning: validated once, written to the run directory.

A TOML file (`--config FILE.toml`) may supply any option under the same name (dashes or
underscores); options given on the command line override it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.errors import TlcliError
from tlcli.settings import check_at_least, check_choice, check_types

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced")
POOLINGS = ("avg", "max", "flatten")
HEAD_SOLVERS = ("auto", "lbfgs", "gradient")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid")

# Automatic training length (--epochs and --early-stopping left out; training.fit.fit_length). A
# fixed number of epochs gives a small dataset a few dozen optimiser steps, far from converged, so
# the budget is in steps; early stopping judges only after a warm-up of steps, so that a few
# validation images cannot stop a run on noise before it has learnt anything.
AUTO_STEPS = 1000
AUTO_EPOCHS = (10, 300)  # the fewest and the most epochs an automatic run takes
WARMUP_STEPS = 200
AUTO_PATIENCE = 5  # epochs, and at least the warm-up's worth of steps


AUTO = "auto"


def rate_or_auto(value, option: str) -> float | None:
    """A learning rate as typed or as a settings file writes it: a positive, finite number, or
    None for auto (found by the range test as a fine-tuning stage begins)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    try:
        rate = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        rate = None
    if rate is None or not 0 < rate < math.inf:
        shown = json.dumps(value) if isinstance(value, (str, bool)) else value  # as TOML writes it
        raise TlcliError(f"{option} {shown} is not a learning rate. Give a positive number such as 1e-4, or auto.")
    return rate


def parse_dense(value) -> tuple[int, ...]:
    """`--dense 512,128` (or a TOML list) -> (512, 128); empty for none."""
    if value in (None, "", "none", 0):
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        units = tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise TlcliError(f"--dense {value!r} is not a list of layer sizes. Use e.g. --dense 256 or --dense 512,128.") from None
    if any(unit <= 0 for unit in units):
        raise TlcliError(f"--dense {value!r}: layer sizes must be positive. Use e.g. --dense 256.")
    return units


@dataclass(frozen=True)
class FitConfig:
    """How to fit: optimiser, schedule, regularisation, stopping. Shared by train and finetune."""

    optimizer: str = "adam"
    learning_rate: float | None = 1e-3  # None: auto, each fine-tuning stage's own range test (finetune only)
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    epochs: int | None = None  # None: enough epochs for about 1,000 optimiser steps (training.fit_length)
    batch_size: int = 32
    label_smoothing: float = 0.0
    class_weight: str = "none"
    early_stopping: int | None = None  # patience in epochs on val_loss; 0 turns it off; None: automatic
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_types(self)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        if self.learning_rate is not None:
            check_at_least("learning_rate", self.learning_rate, 0, inclusive=False)
        if self.epochs is not None:
            check_at_least("epochs", self.epochs, 1)
        check_at_least("batch_size", self.batch_size, 1)
        if self.early_stopping is not None:
            check_at_least("early_stopping", self.early_stopping, 0)
        check_at_least("weight_decay", self.weight_decay, 0)
        check_at_least("momentum", self.momentum, 0)
        if not 0 <= self.label_smoothing < 1:
            raise TlcliError(f"--label-smoothing {self.label_smoothing} is out of range. Use a value in [0, 1).")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `tlcli train` needs, resolved and validated."""

    data: Path
    model: str
    out: Path | None = None
    weights: str = "imagenet"
    image_size: int | None = None
    pooling: str = "avg"
    dense: tuple[int, ...] = ()
    activation: str = "relu"
    dropout: float = 0.0
    val_split: float = 0.2
    test_split: float = 0.0
    cache_features: bool = True
    cache_images: bool = True  # end to end: decode each image once per run, not once per epoch
    head_solver: str = "auto"  # auto: solve a linear head on cached features when its settings allow
    strict: bool = False
    labels: Path | None = None  # a CSV of path,label[,split] rows, instead of class folders
    label_columns: str | None = None  # "path=image,label=tags": the CSV's columns, if named otherwise
    allow_outside_paths: bool = False
    multi_label: bool = False  # several labels per image (sigmoid head, binary cross-entropy)
    label_delimiter: str = " "  # what separates them in the label column
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self):
        from tlcli.models.backbones import get_backbone

        check_types(self)
        get_backbone(self.model)
        if self.fit.learning_rate is None:
            raise TlcliError("--learning-rate auto is for fine-tuning stages (a range test each). Training a head "
                             "needs a number, e.g. --learning-rate 0.001.")
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("head_solver", self.head_solver, HEAD_SOLVERS)
        check_choice("activation", self.activation, ACTIVATIONS)
        if not 0 <= self.dropout < 1:
            raise TlcliError(f"--dropout {self.dropout} is out of range. Use a value in [0, 1).")
        self.label_file()  # a bad --label-columns or a --multi-label without --labels is refused here
        if self.multi_label and self.fit.class_weight != "none":
            raise TlcliError(f"--class-weight {self.fit.class_weight} weighs images by their one class; multi-label "
                             "images have several. Drop --class-weight with --multi-label.")

    def label_file(self):
        from tlcli.data.labels import LabelFile

        return LabelFile.parse(self.labels, self.label_columns, self.allow_outside_paths, self.multi_label,
                               self.label_delimiter)

    def to_dict(self) -> dict:
        document = dataclasses.asdict(self)
        document.update(document.pop("fit"))
        return document


def split_fit_settings(settings: dict) -> tuple[dict, FitConfig]:
    """Separate FitConfig's fields from the rest of a flat settings mapping."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    fit = FitConfig(**{key: value for key, value in settings.items() if key in names})
    return {key: value for key, value in settings.items() if key not in names}, fit
