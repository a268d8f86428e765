"""Options that several commands share, as groups declared once.

A group is a frozen dataclass whose fields are options, annotated with their `Annotated` aliases
(`tlcli.commands._options`). A command takes a group as one parameter (`distribution: Distribution`);
`takes_option_groups` shows Typer each of the group's options in its place instead, with its name,
default, help and panel, and hands the command the group built from their values.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing

from tlcli.augment.config import FIELDS, AugmentConfig, augmentation_from_options
from tlcli.commands._options import (
    Activation,
    AllowOutsidePaths,
    AugmentPreset,
    Brightness,
    ClassWeight,
    Contrast,
    Crop,
    Dense,
    Dropout,
    EarlyStopping,
    Epochs,
    FinetuneLearningRate,
    FineTuningAugmentPreset,
    Flip,
    HeadSolver,
    Hue,
    ImageSize,
    LabelColumns,
    LabelDelimiter,
    Labels,
    LabelSmoothing,
    LearningRate,
    ModelName,
    Momentum,
    MultiLabel,
    Nesterov,
    Noise,
    Optimizer,
    Pooling,
    Precision,
    PreviewAugmentPreset,
    ReplicaBatchSize,
    Rotation,
    Saturation,
    Schedule,
    Seed,
    StageEarlyStopping,
    Strategy,
    TestSplit,
    Tpu,
    TuneAugmentPreset,
    TuneEpochs,
    TuneLearningRate,
    Translation,
    ValSplit,
    WeightDecay,
    Weights,
    Zoom,
)
from tlcli.distribute.placement import DistributeConfig
from tlcli.training.config import AUTO, FitConfig, TrainConfig, parse_dense

_FIT = FitConfig()


def option_group(cls):
    """Make a class a group of options: a frozen dataclass that a command takes as one parameter."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    cls.__option_group__ = True
    return cls


def is_option_group(annotation) -> bool:
    return isinstance(annotation, type) and getattr(annotation, "__option_group__", False)


def takes_option_groups(command):
    """A command whose group parameters are spread into their options for Typer, and gathered back
    into the group before it runs. A group parameter's default, if one of the group, gives its
    options' defaults (otherwise the group's own)."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    parameters, groups = [], {}
    for parameter in signature.parameters.values():
        group = hints.get(parameter.name, parameter.annotation)
        if not is_option_group(group):
            parameters.append(parameter.replace(annotation=group))
            continue
        default = parameter.default if isinstance(parameter.default, group) else group()
        fields = typing.get_type_hints(group, include_extras=True)
        names = [field.name for field in dataclasses.fields(group)]
        parameters += [inspect.Parameter(name, parameter.kind, default=getattr(default, name), annotation=fields[name])
                       for name in names]
        groups[parameter.name] = (group, names, default)
    taken = [parameter.name for parameter in parameters]
    if len(taken) != len(set(taken)):
        raise TypeError(f"{command.__qualname__}: an option of a group has the name of another parameter.")

    @functools.wraps(command)
    def gathered(*args, **kwargs):
        for name, (group, names, default) in groups.items():
            kwargs[name] = group(**{field: kwargs.pop(field, getattr(default, field)) for field in names})
        return command(*args, **kwargs)

    gathered.__signature__ = signature.replace(parameters=parameters)
    gathered.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return gathered


@option_group
class Distribution(DistributeConfig):
    """Where to run (tf.distribute): the DistributeConfig that --strategy, --tpu and --precision give."""

    strategy: Strategy = "auto"
    tpu: Tpu = None
    precision: Precision = "float32"


@option_group
class LabelOptions:
    """A label file instead of class folders, and how to read it; the fields of the library's configs."""

    labels: Labels = None
    label_columns: LabelColumns = None
    allow_outside_paths: AllowOutsidePaths = False


@option_group
class MultiLabelOptions(LabelOptions):
    """The label file's options, and several labels per image in it."""

    multi_label: MultiLabel = False
    label_delimiter: LabelDelimiter = " "


@option_group
class Augmentation:
    """An augmentation preset and the strength flags over it; None is "not given", so that the
    preset (or a --config file's [augmentation] table, through the flags' defaults) decides."""

    augment: AugmentPreset = None
    rotation: Rotation = None
    translation: Translation = None
    zoom: Zoom = None
    flip: Flip = None
    crop: Crop = None
    brightness: Brightness = None
    contrast: Contrast = None
    saturation: Saturation = None
    hue: Hue = None
    noise: Noise = None

    def flags(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}

    def chosen(self) -> AugmentConfig | None:
        """The settings, or None when no option (nor a --config table) names any: the workflow's default."""
        return None if all(value is None for value in (self.augment, *self.flags().values())) else self.config()

    def config(self, default: str = "none") -> AugmentConfig:
        """The settings: the flags over the preset (`default` when none is named)."""
        return augmentation_from_options(self.augment, self.flags(), default=default)


@option_group
class FineTuningAugmentation(Augmentation):
    """The augmentation options of fine-tuning (finetune, lr-find), whose default is the source run's."""

    augment: FineTuningAugmentPreset = None


@option_group
class TuneAugmentation(Augmentation):
    """The augmentation options of tune: a fine-tuning search's trials augment, a head search's do not."""

    augment: TuneAugmentPreset = None


@option_group
class PreviewAugmentation(Augmentation):
    """The augmentation options of the preview (tlcli augment), whose default preset is standard."""

    augment: PreviewAugmentPreset = None


@option_group
class FitOptions:
    """How to fit, but for how long: the fields of the library's FitConfig that every training command takes."""

    optimizer: Optimizer = _FIT.optimizer
    learning_rate: LearningRate = _FIT.learning_rate
    momentum: Momentum = _FIT.momentum
    nesterov: Nesterov = _FIT.nesterov
    schedule: Schedule = _FIT.schedule
    batch_size: ReplicaBatchSize = _FIT.batch_size
    label_smoothing: LabelSmoothing = _FIT.label_smoothing
    class_weight: ClassWeight = _FIT.class_weight
    early_stopping: EarlyStopping = _FIT.early_stopping
    weight_decay: WeightDecay = _FIT.weight_decay
    seed: Seed = _FIT.seed

    def config(self) -> FitConfig:
        return FitConfig(**dataclasses.asdict(self))


@option_group
class TrainFitOptions(FitOptions):
    """How a new head is fitted (train): FitOptions and the number of epochs."""

    epochs: Epochs = _FIT.epochs


@option_group
class TuneFitOptions(TrainFitOptions):
    """How the trials of a search fit; None is "not given", so the searched command's default holds."""

    learning_rate: TuneLearningRate = None
    epochs: TuneEpochs = None


@option_group
class FinetuneFitOptions(FitOptions):
    """How each fine-tuning stage fits: the rate of stages without one (auto: their range test) and
    early stopping of automatic length; each stage sets its own epochs."""

    learning_rate: FinetuneLearningRate = AUTO
    early_stopping: StageEarlyStopping = _FIT.early_stopping


@option_group
class HeadOptions:
    """The backbone and the head of a new run (train, and the runs a head search tries)."""

    model: ModelName = "resnet50"
    weights: Weights = TrainConfig.weights
    image_size: ImageSize = None
    pooling: Pooling = TrainConfig.pooling
    dense: Dense = None
    activation: Activation = TrainConfig.activation
    dropout: Dropout = TrainConfig.dropout
    head_solver: HeadSolver = TrainConfig.head_solver

    def settings(self) -> dict:
        """TrainConfig's fields, the hidden layers' sizes read from --dense's text."""
        return {**dataclasses.asdict(self), "dense": parse_dense(self.dense)}


@option_group
class SplitOptions:
    """How a new run splits a flat dataset (its seed is the fit's)."""

    val_split: ValSplit = TrainConfig.val_split
    test_split: TestSplit = TrainConfig.test_split


@option_group
class SeededSplitOptions(SplitOptions):
    """How a dataset is split where no fit seeds it (inspect, pack, extract, audit): the library's SplitFields."""

    seed: Seed = 0
