"""The fine-tuning search of `tlcli tune --finetune RUN_DIR`: how deep to unfreeze a trained
run's backbone, and at what learning rate.

A trial is one `tlcli finetune` stage: it loads the run's saved model, unfreezes the backbone
from the trial's depth to the top (BatchNormalization keeps running in inference mode), fits on
the images, augmented as `tlcli finetune` augments them by default, with early stopping, and is
scored on the validation images, split exactly as the run was trained. best.toml holds the settings `tlcli finetune RUN_DIR --config best.toml` reads,
with the best trial as its one stage.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from tlcli.augment.augmenter import build_augmenter
from tlcli.data.pipeline import epoch_counter
from tlcli.data.recorded import run_dataset
from tlcli.distribute.placement import place
from tlcli.errors import TlcliError
from tlcli.events import Events
from tlcli.models.backbones import BackboneSpec
from tlcli.models.saved import load_placed_model
from tlcli.models.weights import find_base
from tlcli.runs.directory import default_run_dir, read_run
from tlcli.runs.history import History
from tlcli.runs.names import HISTORY, METRICS
from tlcli.runtime import set_seed
from tlcli.storage import location
from tlcli.training.batches import decode_splits, image_batches
from tlcli.training.config import FitConfig, split_fit_settings
from tlcli.training.fit import class_weights_for, fit_and_measure
from tlcli.training.finetune import (
    FinetuneConfig,
    Stage,
    count_parameters,
    fine_tuning_augmentation,
    first_unfrozen_index,
    parse_stage,
    parse_unfreeze,
    run_backbone,
    stage_name,
    unfreeze,
)
from tlcli.training.lifecycle import read_sources
from tlcli.tune.space import Kinds, Range, parse_space
from tlcli.tune.trials import validation_samples

# What a fine-tuning search may vary; unfreeze (a block, a layer count, a percentage or all) is read by check_value.
SEARCHABLE: Kinds = {
    "unfreeze": None,
    "learning_rate": float,
    "epochs": int,
    "optimizer": str,
    "batch_size": int,
    "weight_decay": float,
    "train_batch_norm": bool,
}
_FIT_NAMES = {f.name for f in dataclasses.fields(FitConfig)}
# Keys a settings file holds for the settings no trial varies.
SETTINGS = _FIT_NAMES | {"train_batch_norm", "strict"}


def default_space(search: str, spec: BackboneSpec) -> dict:
    """The top block, the top two blocks or everything, at a few fine-tuning learning rates."""
    depths = [spec.blocks[-1].name, spec.blocks[-2].name, "all"]
    if search == "grid":
        return {"unfreeze": depths, "learning_rate": [1e-6, 1e-5]}
    return {"unfreeze": depths, "learning_rate": Range(1e-6, 1e-4, log=True)}


def search_space(document: dict | None, search: str, base: FinetuneConfig, source: str) -> dict:
    """The space a TOML document defines (checked as `tlcli finetune` would), or the default one."""
    spec = source_backbone(base)
    if document is None:
        return default_space(search, spec)
    space = parse_space(document, search, SEARCHABLE, functools.partial(check_value, base, spec), source)
    if "weight_decay" in space and "adamw" not in {base.fit.optimizer, *space.get("optimizer", [])}:
        raise TlcliError(
            f"{source}: weight_decay acts only through AdamW when fine-tuning (the head's L2 penalty was "
            "fixed in training). Set optimizer = \"adamw\" or search it, or leave weight_decay out."
        )
    return space


def source_backbone(base: FinetuneConfig) -> BackboneSpec:
    return run_backbone(read_run(base.source))


def check_value(base: FinetuneConfig, spec: BackboneSpec, key: str, value):
    if key == "unfreeze":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TlcliError(f"unfreeze value {value!r} is not a block name, a layer count, a percentage or 'all'.")
        try:
            return parse_unfreeze(str(value), spec)
        except TlcliError as error:
            raise TlcliError(f"unfreeze {error}") from None
    try:
        trial_config(base, {key: value}, spec)
    except TlcliError as error:
        raise TlcliError(f"{key} = {value!r}: {error}") from None
    return value


TRIAL_EPOCHS = 10  # a trial's one stage, without --epochs
TRIAL_RATE = 1e-5  # its learning rate, when neither the space nor --learning-rate gives one

def trial_config(base: FinetuneConfig, params: dict, spec: BackboneSpec) -> FinetuneConfig:
    """The base settings with one trial's values, the trial as the one stage (the top block by default)."""
    fit = dataclasses.replace(base.fit, **{key: value for key, value in params.items() if key in _FIT_NAMES})
    if fit.optimizer != "adamw":  # weight decay acts on fine-tuning only through AdamW
        fit = dataclasses.replace(fit, weight_decay=0.0)
    stage = Stage(params.get("unfreeze", spec.blocks[-1].name), fit.epochs or TRIAL_EPOCHS, fit.learning_rate)
    train_batch_norm = params.get("train_batch_norm", base.train_batch_norm)
    return dataclasses.replace(base, fit=fit, stages=(str(stage),), train_batch_norm=train_batch_norm)


def settings_from(settings: dict, data: Path | None, source: Path) -> FinetuneConfig:
    """The settings no trial varies, over `tlcli finetune`'s defaults."""
    base = FinetuneConfig(source=source, data=data, fit=FitConfig(learning_rate=TRIAL_RATE))
    given = {key: value for key, value in settings.items() if value is not None}  # None: finetune's default
    rest, fit = split_fit_settings({**dataclasses.asdict(base.fit), **given})
    return dataclasses.replace(base, fit=fit, **rest)


class FinetuneTrials:
    """Trials that each fine-tune the source run's saved model."""

    def __init__(self, config):
        self.base = base = config.base
        self.augmentation, self.distribution = config.augmentation, config.distribution
        self.run_info = read_run(base.source)
        self.spec = run_backbone(self.run_info)

    def open(self, out: Path | None, events: Events) -> Path:
        dataset, _ = run_dataset(self.run_info, self.base.data, self.base.strict)
        self.val_samples = validation_samples(
            dataset, "Add a val/ folder to the data, or search a run trained with --val-split above 0.")
        self.train_samples = dataset.split("train")
        self.num_classes = len(dataset.class_names)
        events.dataset(dataset)
        self.data, self.sources = dataset.root, read_sources(source=self.run_info.path)
        return Path(out) if out else default_run_dir(self.spec.name, "tune-finetune-")

    def start(self, events: Events) -> None:
        self.placement = place(self.distribution, self.base.data)
        events.placed(self.placement, self.base.fit.batch_size)
        labels = [sample.label for sample in self.train_samples]
        self.class_weights = class_weights_for(self.base.fit, labels, self.num_classes)
        # Decoded once for every trial, as `tlcli finetune` decodes them once for its stages, so
        # that the run best.toml replays reads the same pixels as the trial it replays.
        self.decoded = decode_splits(self.base.cache_images, {"train": self.train_samples, "val": self.val_samples},
                                     self.run_info.image_size, self.base.fit.batch_size, scratch_dir=None,
                                     events=events)

    def run(self, params: dict, trial_dir: Path) -> dict:
        trial = trial_config(self.base, params, self.spec)
        stage = parse_stage(trial.stages[0], self.spec)  # as `tlcli finetune` reads best.toml's stage
        fit_config = dataclasses.replace(trial.fit, learning_rate=stage.learning_rate, epochs=stage.epochs)
        set_seed(fit_config.seed)  # before loading: the head's dropout draws its random state then
        model, run = load_placed_model(self.base.source, self.placement)  # as `tlcli finetune` loads it
        backbone = find_base(model, self.spec)
        unfreeze(backbone, first_unfrozen_index(backbone, self.spec, stage.unfreeze), trial.train_batch_norm)
        batches = functools.partial(image_batches, self.placement, image_size=run.image_size,
                                    batch_size=fit_config.batch_size, num_classes=self.num_classes)
        epoch = epoch_counter()
        augment = build_augmenter(fine_tuning_augmentation(self.augmentation, self.run_info), fit_config.seed)
        train_data, steps = batches(self.train_samples, shuffle=True, seed=fit_config.seed, epoch=epoch,
                                    class_weights=self.class_weights, augment=augment,
                                    decoded=self.decoded.get("train"))
        val_data, _ = batches(self.val_samples, decoded=self.decoded.get("val"))
        metrics = fit_and_measure(model, train_data, val_data, fit_config, steps=steps, run_dir=trial_dir,
                                  history=History(trial_dir / HISTORY), stage=stage_name(1, stage), epoch=epoch,
                                  placement=self.placement)
        return {**metrics, "trainable_parameters": count_parameters(model.trainable_weights)}

    def best_settings(self, params: dict) -> dict:
        """The trial under `tlcli finetune`'s option names; the stage holds its epochs."""
        settings = trial_config(self.base, params, self.spec).to_dict()
        for key in ("source", "out", "epochs"):
            settings.pop(key)
        settings["stages"] = list(settings["stages"])
        if settings["data"] is not None:
            settings["data"] = str(location(settings["data"]).resolve())
        if self.augmentation is not None:  # a table of its own, as `tlcli finetune --config` reads it
            settings["augmentation"] = self.augmentation.to_dict()
        return settings

    def next_command(self, best: Path | str) -> str:
        return f"tlcli finetune {self.base.source} --config {best}"

    def baseline(self, objective: str) -> float | None:
        """The source run's own score on the same validation images, before any fine-tuning."""
        metrics = self.run_info.path / METRICS
        return json.loads(metrics.read_text()).get(objective) if metrics.is_file() else None


TRIALS = FinetuneTrials  # what `tlcli.tune.search.search_kind` hands out
