"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.augment.config import FLIPS, PRESETS, STRENGTHS
from tlcli.commands._errors import one_line_errors
from tlcli.models.backbones import MODEL_NAMES
from tlcli.models.tta import DEFAULT_VIEW_SET, VIEW_SETS
from tlcli.settings import check_choice
from tlcli.storage import location
from tlcli.training.config import (
    AUTO,
    AUTO_EPOCHS,
    AUTO_PATIENCE,
    AUTO_STEPS,
    CLASS_WEIGHTS,
    OPTIMIZERS,
    SCHEDULES,
    WARMUP_STEPS,
    FitConfig,
    rate_or_auto,
)

DataPath = Annotated[
    Path,
    typer.Argument(
        parser=location,
        help="Dataset folder: DATA/<class>/<images> or DATA/train|val|test/<class>/<images>.",
        metavar="DATA",
        show_default=False,
    ),
]
ModelName = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help=f"Backbone: {', '.join(MODEL_NAMES)}.",
        metavar="NAME",
    ),
]
ImageSize = Annotated[
    Optional[int],
    typer.Option(help="Square input size in pixels.", show_default="the backbone's native size"),
]
Weights = Annotated[
    str,
    typer.Option(help="imagenet (downloads once), none, a .h5 / .weights.h5 file, a run directory or .keras model."),
]
ValSplit = Annotated[
    float, typer.Option(help="Flat layout: fraction of each class held out for validation.")
]
TestSplit = Annotated[
    float, typer.Option(help="Flat layout: fraction of each class held out for testing.")
]
Seed = Annotated[int, typer.Option(help="Random seed for splits, shuffling and initialisation.")]
# A label file instead of class folders.
Labels = Annotated[
    Optional[Path],
    typer.Option("--labels", metavar="FILE.csv", parser=location, show_default=False, rich_help_panel="Label file",
                 help="A CSV of path,label[,split] rows naming DATA's images and their labels, instead of class "
                      "folders (paths relative to DATA or to the CSV)."),
]
LabelColumns = Annotated[
    Optional[str],
    typer.Option("--label-columns", metavar="KEY=COLUMN,...", show_default=False, rich_help_panel="Label file",
                 help="The label file's columns when not named path (or filename), label and split, e.g. "
                      "path=image_id,label=tags."),
]
AllowOutsidePaths = Annotated[
    bool,
    typer.Option("--allow-outside-paths", rich_help_panel="Label file",
                 help="Accept label-file paths that leave DATA and the CSV's folder (absolute, or through ..)."),
]
MultiLabel = Annotated[
    bool,
    typer.Option("--multi-label", rich_help_panel="Label file",
                 help="Several labels per image in the label column (a sigmoid head, binary cross-entropy, a "
                      "threshold per label tuned on validation). Needs --labels."),
]
LabelDelimiter = Annotated[
    str,
    typer.Option("--label-delimiter", metavar="TEXT", rich_help_panel="Label file",
                 help="What separates the labels of an image with --multi-label, as the spaces in 'haze primary water'.",
                 show_default="a space"),
]
Strict = Annotated[bool, typer.Option("--strict", help="Treat any unusable file as an error.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
RunPath = Annotated[
    Path,
    typer.Argument(
        parser=location,
        help="A run directory written by tlcli, or a .keras model with labels.txt beside it.",
        metavar="MODEL",
        show_default=False,
    ),
]
TrainedRunPath = Annotated[
    Path,
    typer.Argument(
        parser=location,
        help="A run directory written by `tlcli train` or `tlcli finetune`, or its model.keras: its config.json "
        "names the backbone, the dataset and the split.",
        metavar="MODEL",
        show_default=False,
    ),
]

# Test-time augmentation (evaluate, predict, export). Two options rather than one with an
# optional value: Typer 0.29 has no optional-value options (it deprecates flag_value), and with
# one, `--tta photos/` would read the path as the value.
ViewSetName = Enum("ViewSetName", {name: name for name in VIEW_SETS}, type=str)
Tta = Annotated[
    bool,
    typer.Option("--tta", help="Test-time augmentation: average the probabilities of "
                 f"{VIEW_SETS[DEFAULT_VIEW_SET].meaning} (other views: --tta-views)."),
]
TtaViews = Annotated[
    Optional[ViewSetName],
    typer.Option(
        "--tta-views",
        help="The views --tta averages, and implies it: "
        + "; ".join(f"{name}, {len(views.views)} views: {views.meaning}" for name, views in VIEW_SETS.items()) + ".",
        show_default=DEFAULT_VIEW_SET,
    ),
]
ExportTta = Annotated[
    bool,
    typer.Option("--tta", help="Add a serving_tta signature to the SavedModel: pixels in, the probabilities averaged "
                 f"over the views of --tta-views ({DEFAULT_VIEW_SET}: {VIEW_SETS[DEFAULT_VIEW_SET].meaning}). "
                 "serving_default and the other formats stay single-view."),
]


def chosen_views(tta: bool, tta_views: ViewSetName | None) -> str | None:
    """The view set that --tta and --tta-views ask for, or None for no test-time augmentation."""
    if tta_views is not None:
        return tta_views.value
    return DEFAULT_VIEW_SET if tta else None


# Training and fine-tuning. Commands take their defaults from the config dataclasses; a
# --config file supplies any option not given on the command line.
def _one_of(name: str, choices: tuple[str, ...]):
    """A callback that refuses a value outside `choices` as the option is parsed, in one line, so that
    a --config file's value is refused in the options' order, among the other checks made then."""

    def check(value: str) -> str:
        with one_line_errors():
            return check_choice(name, value, choices)

    return check


Optimizer = Annotated[str, typer.Option(help="adam|adamw|sgd|rmsprop", callback=_one_of("optimizer", OPTIMIZERS), rich_help_panel="Optimisation")]
LearningRate = Annotated[float, typer.Option("--learning-rate", "--lr", help="Learning rate (the first, under a schedule).", rich_help_panel="Optimisation")]


def _rate_or_auto(value: str) -> float | None:
    with one_line_errors():
        return rate_or_auto(value, "--learning-rate")


def rate_option(value) -> str:
    """A learning rate as a TOML file writes it (a number, as best.toml does, or "auto"), in the option's form."""
    rate = rate_or_auto(value, "--learning-rate")
    return AUTO if rate is None else repr(rate)


TuneLearningRate = Annotated[Optional[float], typer.Option(
    "--learning-rate", "--lr", help="The trials' learning rate, where the space does not search it.",
    show_default=f"{FitConfig.learning_rate:g}; with --finetune, 1e-05", rich_help_panel="Optimisation")]
FinetuneLearningRate = Annotated[str, typer.Option(
    "--learning-rate", "--lr", metavar="RATE|auto", callback=_rate_or_auto, rich_help_panel="Optimisation",
    help="The learning rate of every stage that --stage gives none (or auto): a number, or auto, which finds "
    "each stage's rate by a range test as the stage begins (see tlcli lr-find). A stage's own rate wins.")]
Momentum = Annotated[float, typer.Option(help="SGD momentum.", rich_help_panel="Optimisation")]
Nesterov = Annotated[bool, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum for SGD.", rich_help_panel="Optimisation")]
Schedule = Annotated[str, typer.Option(help="Learning-rate schedule: constant|cosine|plateau.", callback=_one_of("schedule", SCHEDULES), rich_help_panel="Optimisation")]
AUTOMATIC_EPOCHS = f"enough for about {AUTO_STEPS:,} optimiser steps, {AUTO_EPOCHS[0]} to {AUTO_EPOCHS[1]}"


def epochs_option(default: str = AUTOMATIC_EPOCHS):
    return Annotated[Optional[int], typer.Option("--epochs", help="Epochs of gradient training.", show_default=default,
                                                 rich_help_panel="Optimisation")]


Epochs = epochs_option()
# A trial of a fine-tuning search is one stage of TRIAL_EPOCHS at TRIAL_RATE (tlcli.tune.finetune),
# unless the options or the space say otherwise.
TuneEpochs = epochs_option(f"{AUTOMATIC_EPOCHS}; with --finetune, 10")
BatchSize = Annotated[int, typer.Option(help="Images per batch.", min=1)]
ReplicaBatchSize = Annotated[int, typer.Option(help="Images per batch; per replica under --strategy (global = this x replicas).", min=1)]
LabelSmoothing = Annotated[float, typer.Option(help="Label smoothing in [0, 1).", rich_help_panel="Optimisation")]
ClassWeight = Annotated[str, typer.Option(help="none|balanced: weight classes inversely to their frequency.", callback=_one_of("class_weight", CLASS_WEIGHTS), rich_help_panel="Optimisation")]
# Early stopping (training.fit.fit_length, fit_callbacks): Keras's EarlyStopping restores the best
# epoch's weights as the fit ends, whether it stopped early or ran all its epochs.
_PATIENCE = f"a patience of {AUTO_PATIENCE} epochs and at least {WARMUP_STEPS} steps"
EarlyStopping = Annotated[Optional[int], typer.Option(
    help="Stop after this many epochs without a lower validation loss (training loss without validation images); "
    "the fit ends with its best epoch's weights, stopped early or not. 0: off, the last epoch's weights.",
    show_default=f"automatic: {_PATIENCE}, not counting the first {WARMUP_STEPS} steps (at most half the epochs)",
    rich_help_panel="Optimisation")]
StageEarlyStopping = Annotated[Optional[int], typer.Option(
    "--early-stopping", help="Stop a stage after this many of its epochs without a lower validation loss (training "
    "loss without validation images); the stage ends with its best epoch's weights, stopped early or not. 0: off, "
    "its last epoch's weights. Either way a stage that ends worse than the model before it is rolled back.",
    show_default=f"automatic, in each stage: {_PATIENCE}, not counting the stage's first {WARMUP_STEPS} steps (at "
    "most half its epochs)",
    rich_help_panel="Optimisation")]
WeightDecay = Annotated[float, typer.Option(help="L2 penalty on the head's kernels; with adamw, AdamW's decoupled weight decay (finetune: adamw only).", rich_help_panel="Optimisation")]
StageCache = Annotated[bool, typer.Option(
    "--cache-features/--no-cache-features",
    help="Compute a stage's frozen lower layers once per image and train the unfrozen top on their output, "
    "when that pays (the route is shown per stage).", rich_help_panel="Run")]
CacheMemory = Annotated[float, typer.Option(
    "--cache-memory", help="GiB that cached rows may take in memory; beyond that they go to a "
    "scratch file in the run directory, removed at the end.", min=0, rich_help_panel="Run")]
CacheImages = Annotated[bool, typer.Option("--cache-images/--no-cache-images", help="End-to-end training and fine-tuning: decode and resize each image once per run and keep it (uint8, in memory up to 2 GiB, or finetune's --cache-memory, else in a scratch file) for every epoch, instead of decoding it again in every epoch.")]


def _out(what: str, default: str):
    return Annotated[Optional[Path], typer.Option("--out", "-o", parser=location, metavar="PATH", help=f"{what} to write.",
                                                  show_default=default, rich_help_panel="Run")]


Out = _out("Run directory", "runs/<time>-<model>")
FinetuneOut = _out("Run directory", "runs/<time>-finetune-<model>")
TuneOut = _out("Tuning directory", "runs/<time>-tune-<model>; with --finetune, runs/<time>-tune-finetune-<model>")
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the output if it already exists.", rich_help_panel="Run")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last completed epoch.", rich_help_panel="Run")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; the summary only.", rich_help_panel="Run")]

# The head on the backbone (train, and the head search of tune).
Pooling = Annotated[str, typer.Option(help="avg|max|flatten: how the feature map becomes a vector.")]
Dense = Annotated[Optional[str], typer.Option(help="Hidden dense layers of the head, e.g. 256 or 512,128.", show_default="none")]
Activation = Annotated[str, typer.Option(help="Hidden-layer activation: relu|leaky_relu|elu|selu|gelu|tanh|sigmoid.")]
Dropout = Annotated[float, typer.Option(help="Dropout rate in the head.")]
HeadSolver = Annotated[str, typer.Option(help="auto|lbfgs|gradient. auto: a head without hidden layers, dropout, label smoothing or AdamW's decay, on cached features of unaugmented images, is solved (logistic regression, penalty cross-validated); any other is trained by gradient.")]


def dense_option(value):
    """--dense as a TOML file may write it, a list of layer sizes (as best.toml does), in the option's form."""
    sizes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    return ",".join(map(str, sizes)) if isinstance(sizes, list) else value


# Where to run (tf.distribute).
Strategy = Annotated[str, typer.Option(help="auto|default|one-device|mirrored|multi-worker|tpu. auto: a TPU with --tpu, all GPUs if several, one GPU, else the CPU.", rich_help_panel="Distribution")]
Tpu = Annotated[Optional[str], typer.Option(help="TPU name, or 'local' on a TPU VM.", show_default=False, rich_help_panel="Distribution")]
Precision = Annotated[str, typer.Option(help="float32|mixed_float16 (GPU)|mixed_bfloat16.", rich_help_panel="Distribution")]

# Augmentation: the same flags for `tlcli train` and `tlcli augment`. None means "not given",
# so a preset or the TOML [augmentation] table decides (tlcli.augment.config.resolve_augment).
_AUGMENTATION = "Augmentation (flags override --augment and the --config file)"


def _strength(name: str):
    largest, meaning = STRENGTHS[name]
    return Annotated[
        Optional[float],
        typer.Option(
            f"--{name}", help=f"0-{largest:g}: {meaning}.", rich_help_panel=_AUGMENTATION,
            show_default=False,
        ),
    ]


def _choice(flag: str, choices, meaning: str, default: str | bool = False):
    return Annotated[
        Optional[str],
        typer.Option(
            flag, help=f"{meaning}: {'|'.join(choices)}.", metavar="[" + "|".join(choices) + "]",
            rich_help_panel=_AUGMENTATION, show_default=default,
        ),
    ]


# The preset when no flag names one: each command's own (the flags' None leaves it to the command).
AugmentPreset = _choice("--augment", PRESETS, "Augmentation preset", "none")
FineTuningAugmentPreset = _choice("--augment", PRESETS, "Augmentation preset", "as the source run's, else shift")
TuneAugmentPreset = _choice("--augment", PRESETS, "Augmentation preset",
                            "with --finetune, as the source run's, else shift; a head search does not augment")
PreviewAugmentPreset = _choice("--augment", PRESETS, "Augmentation preset", "standard")
Rotation = _strength("rotation")
Translation = _strength("translation")
Zoom = _strength("zoom")
Flip = _choice("--flip", FLIPS, "Random mirroring")
Crop = _strength("crop")
Brightness = _strength("brightness")
Contrast = _strength("contrast")
Saturation = _strength("saturation")
Hue = _strength("hue")
Noise = _strength("noise")
