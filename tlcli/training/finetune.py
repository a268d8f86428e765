"""`tlcli finetune`: staged unfreezing of a trained run's backbone, into a new run directory.

Each stage unfreezes the backbone from a named block (or a count or share of layers) to the
top, recompiles at the stage's lower learning rate and trains, on augmented images: a solved
head fits its training images to a loss near zero, so only new views of them leave anything to
learn (by default the source run's augmentation, else the `shift` preset). BatchNormalization layers stay
frozen unless asked otherwise, and always run in inference mode (the base is called with
training=False), so their ImageNet statistics survive small fine-tuning batches. The best
weights by validation loss are kept across stages: a stage that ends worse is rolled back.
"""

from __future__ import annotations

import dataclasses
import math
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tlcli.augment.augmenter import build_augmenter
from tlcli.augment.config import PRESETS, AugmentConfig
from tlcli.data.dataset import Dataset
from tlcli.data.recorded import run_dataset
from tlcli.data.row_cache import DEFAULT_MEMORY_GIB
from tlcli.distribute.placement import DistributeConfig, place
from tlcli.errors import TlcliError
from tlcli.events import SILENT, WARNING, Events, StageStart
from tlcli.models.backbones import BackboneSpec, get_backbone
from tlcli.models.saved import load_placed_model
from tlcli.models.split import block_start
from tlcli.models.weights import find_base
from tlcli.runs.atomic import write_json
from tlcli.runs.curves import plot_range_test
from tlcli.runs.directory import RunInfo, default_run_dir, read_run
from tlcli.runs.history import History
from tlcli.runs.locks import locks_outputs
from tlcli.runs.names import BACKUP, EXPORT_METADATA
from tlcli.runs.staging import staged_output
from tlcli.runtime import import_keras
from tlcli.settings import check_types
from tlcli.training.callbacks import load_model_state, save_model_state
from tlcli.training.config import AUTO, FitConfig
from tlcli.training.fit import FitResult, compile_model, fit, fit_length
from tlcli.training.lifecycle import Outcome, TrainingRun, validation_thresholds
from tlcli.training.range_test import range_test
from tlcli.training.stage_inputs import END_TO_END, CacheReport, StageInputs, cached_inputs, image_inputs, plan_route

keras = import_keras()

STAGE_HELP = ("UNFREEZE:EPOCHS:LEARNING_RATE, e.g. block5:auto:auto, block5:3:1e-4, 30:2:1e-5, 25%:2:1e-5 or "
              "all:10:auto")
# When the range test finds no rate that lowers the loss, as on a head already fitted (its loss
# over a hundred single batches is noise): the rates a by-hand Keras fine-tuning of the same head
# did well at (bench/finetune_value.py: every layer at 1e-4 and 1e-5 within a test image of each
# other; tlcli's earlier 1e-5 / 1e-6 ended lower).
FALLBACK_RATE, FALLBACK_RATE_ALL = 1e-4, 1e-5
# A stage of automatic length gets about STAGE_STEPS optimiser steps (two stages: about 1,000, as a head), within
# STAGE_EPOCHS, and stops early on the validation loss (training.fit.fit_length's rule).
STAGE_STEPS, STAGE_EPOCHS = 500, (3, 20)
AUGMENT_PRESET = "shift"  # what a fine-tuning augments with when neither it nor its source run says


@dataclass(frozen=True)
class Stage:
    unfreeze: str  # a block name, a layer count ("30"), a share ("25%") or "all"
    epochs: int | None  # None: about STAGE_STEPS optimiser steps (epochs_for), stopped early on val loss
    learning_rate: float | None  # None: --learning-rate's, else found by the range test as the stage begins

    def __str__(self) -> str:
        rate = AUTO if self.learning_rate is None else f"{self.learning_rate:g}"
        return f"{self.unfreeze}:{AUTO if self.epochs is None else self.epochs}:{rate}"

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The stage's epochs: as given, or enough for about STAGE_STEPS steps, within STAGE_EPOCHS."""
        if self.epochs is not None:
            return self.epochs
        fewest, most = STAGE_EPOCHS
        return min(most, max(fewest, -(-STAGE_STEPS // max(1, steps_per_epoch))))

    @property
    def fallback_rate(self) -> float:
        return FALLBACK_RATE_ALL if self.unfreeze == "all" else FALLBACK_RATE


def stage_name(number: int, stage: Stage) -> str:
    """How history.csv and the TensorBoard logs name a stage."""
    return f"stage{number}-{stage.unfreeze}"


def parse_stage(text: str, spec: BackboneSpec) -> Stage:
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise TlcliError(f"--stage {text!r} is not a stage. Expected {STAGE_HELP}.")
    unfreeze, epochs, rate = (part.strip() for part in parts)
    try:
        epochs_value = None if epochs.lower() == AUTO else int(epochs)
        rate_value = None if rate.lower() == AUTO else float(rate)
    except ValueError:
        raise TlcliError(
            f"--stage {text!r}: epochs must be a whole number or auto, and the learning rate a number or auto. "
            f"Expected {STAGE_HELP}."
        ) from None
    if (epochs_value is not None and epochs_value < 1) or (rate_value is not None and not 0 < rate_value < math.inf):
        raise TlcliError(f"--stage {text!r}: epochs and learning rate must be positive and finite. Expected {STAGE_HELP}.")
    try:
        unfreeze = parse_unfreeze(unfreeze, spec)
    except TlcliError as error:
        raise TlcliError(f"--stage {text!r}: {error}") from None
    return Stage(unfreeze, epochs_value, rate_value)


def parse_unfreeze(text: str, spec: BackboneSpec) -> str:
    """A stage's UNFREEZE part, lower-cased: a block of `spec`, a layer count, a share or 'all'."""
    unfreeze = text.strip().lower()
    if unfreeze != "all" and unfreeze not in spec.block_names:
        share = re.fullmatch(r"(\d+(?:\.\d+)?)%", unfreeze)
        if share and not 0 < float(share.group(1)) <= 100 or not (share or unfreeze.isdigit()) or unfreeze == "0":
            raise TlcliError(
                f"{unfreeze!r} is not a block of {spec.name} "
                f"({', '.join(spec.block_names)}), a layer count, a percentage or 'all'."
            )
        if unfreeze.isdigit() and int(unfreeze) > spec.layer_count:
            raise TlcliError(
                f"{unfreeze} is more layers than {spec.name} has ({spec.layer_count}). Unfreeze at most "
                f"{spec.layer_count}, or give a block ({', '.join(spec.block_names)}), a percentage or 'all'."
            )
    return unfreeze


def default_stages(spec: BackboneSpec) -> list[Stage]:
    """The top block first, then everything, each for about STAGE_STEPS steps at the rate its
    range test finds (or the fallback). A stage that ends worse than the model before it is
    rolled back: on random VGG16 features one epoch of Adam at 1e-4 once took the validation loss
    from 0.30 to 34."""
    return [
        Stage(spec.blocks[-1].name, None, None),
        Stage("all", None, None),
    ]


def first_unfrozen_index(base, spec: BackboneSpec, unfreeze: str) -> int:
    """Index into base.layers from which layers are unfrozen."""
    layers = [layer.name for layer in base.layers]
    if unfreeze == "all":
        return 0
    if unfreeze.endswith("%"):
        return len(layers) - max(1, round(len(layers) * float(unfreeze[:-1]) / 100))
    if unfreeze.isdigit():
        return max(0, len(layers) - int(unfreeze))
    return block_start(base, spec.block(unfreeze))


def unfreeze(base, start: int, train_batch_norm: bool) -> None:
    """Make base.layers[start:] trainable (BatchNormalization only with `train_batch_norm`)."""
    base.trainable = True
    for index, layer in enumerate(base.layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and (train_batch_norm or not is_batch_norm)


def count_parameters(weights) -> int:
    return int(sum(keras.ops.size(weight) for weight in weights))


@dataclass(frozen=True)
class FinetuneConfig:
    source: Path
    data: Path | None = None
    out: Path | None = None
    stages: tuple[str, ...] = ()
    train_batch_norm: bool = False
    strict: bool = False
    cache_features: bool = True  # a stage trains on its frozen part's output, computed once, when that pays
    cache_memory: float = DEFAULT_MEMORY_GIB  # what the caches may hold in memory before they spill to disk
    cache_images: bool = True  # decode each image once per run, not once per epoch
    # fit.learning_rate: the rate of every stage given none; None (auto): each such stage's range test
    fit: FitConfig = dataclasses.field(default_factory=lambda: FitConfig(learning_rate=None))

    def __post_init__(self):
        check_types(self)

    def to_dict(self) -> dict:
        document = dataclasses.asdict(self)
        document.update(document.pop("fit"))
        return document


@locks_outputs
def finetune(
    config: FinetuneConfig,
    *,
    augmentation: AugmentConfig | None = None,
    distribution: DistributeConfig = DistributeConfig(),
    overwrite: bool = False,
    resume: bool = False,
    events: Events = SILENT,
) -> Outcome:
    """Fine-tune a run into `config.out` (a folder, or a URL: runs.staging), its training images
    augmented by `augmentation` (None: see fine_tuning_augmentation)."""
    with staged_output(config.out, "run", overwrite=overwrite, resume=resume, data=config.data,
                       sources={config.source: "the source run"}) as staged:
        outcome = _finetune(config, augmentation, staged.local, distribution, overwrite, resume, events)
        return dataclasses.replace(outcome, run_dir=staged.public(outcome.run_dir))


def fine_tuning_augmentation(given: AugmentConfig | None, source: RunInfo) -> AugmentConfig:
    """`given`, else the augmentation the source run trained with, else the AUGMENT_PRESET."""
    if given is not None:
        return given
    recorded = source.config.get("augmentation")
    if recorded and not AugmentConfig(**recorded).is_identity:
        return AugmentConfig(**recorded)
    return PRESETS[AUGMENT_PRESET]


def _finetune(config: FinetuneConfig, augmentation: AugmentConfig | None, out: Path | None,
              distribution: DistributeConfig, overwrite: bool, resume: bool, events: Events) -> Outcome:
    placement = place(distribution, config.data)  # first: multi-worker collectives need it so
    check_weight_decay(config.fit)
    source = read_run(config.source)
    augmentation = fine_tuning_augmentation(augmentation, source)
    spec = run_backbone(source)
    source_config = source.config
    stages = [parse_stage(text, spec) for text in config.stages] if config.stages else default_stages(spec)
    dataset, options = run_dataset(source, config.data, config.strict)
    check_class_weight(config.fit, dataset)
    run = TrainingRun(placement, dataset, config.fit, events)
    with run.claimed(out or default_run_dir(spec.name, prefix="finetune-"), source=source.path, overwrite=overwrite,
                     resume=resume):
        model, source = load_placed_model(config.source, placement)
        base = find_base(model, spec)
        run.start({
            **config.to_dict(),
            "learning_rate": AUTO if config.fit.learning_rate is None else config.fit.learning_rate,
            "stages": [str(stage) for stage in stages],
            "augmentation": augmentation.to_dict(),
            "kind": "finetune",
            "source_run": str(source.path.resolve()),
            "model": spec.name,
            "image_size": source.image_size,
            "preprocessing": spec.preprocessing,
            "pooling": source_config.get("pooling"),
            "val_split": options.val_split,
            "test_split": options.test_split,
        })
        metrics = _run_stages(run, model, base, spec, config, stages, source.image_size,
                              build_augmenter(augmentation, config.fit.seed))
        if dataset.multi_label:  # the fine-tuned model's probabilities moved: tune its thresholds again
            metrics["thresholds"] = validation_thresholds(model, None, None, dataset, source.image_size,
                                                          config.fit.batch_size)
        run.keep(model, metrics)
    return Outcome(run.requested, metrics, "fine-tuning")


def check_class_weight(fit: FitConfig, dataset: Dataset) -> None:
    """--class-weight weighs an image by its one class: a multi-label image has several."""
    if dataset.multi_label and fit.class_weight != "none":
        raise TlcliError(f"--class-weight {fit.class_weight} weighs images by their one class; multi-label "
                         "images have several. Drop --class-weight for this multi-label run.")


def _run_stages(run: TrainingRun, model, base, spec: BackboneSpec, config: FinetuneConfig, stages: list[Stage],
                image_size: int, augment) -> dict:
    """Fit the stages a started run has not finished yet, each kept only if it ends no worse
    than the best before it; the metrics of the model with its backbone frozen again."""
    fit_config, placement = config.fit, run.placement
    decoded = run.decode(config.cache_images, image_size, memory_budget=int(config.cache_memory * 2**30))
    inputs = image_inputs(placement, run.dataset, image_size, fit_config, decoded, augment=augment)
    rates = _StageRates(run.run_dir / BACKUP / "stage-rates.json")
    session = _Session(model, base, spec, config, image_size, inputs, rates, run, augment is not None)
    with placement.strategy.scope():  # to measure the loss before the stages: no rate plays a part
        compile_model(model, fit_config, FALLBACK_RATE, inputs.steps)
    book = _StageBook.open(run.run_dir / BACKUP, model, lambda: _validation_loss(model, inputs), run.events,
                           len(stages), "val_loss" if inputs.val_data is not None else "loss")
    for number, stage in enumerate(stages, start=1):
        if number <= book.stages_done:
            continue
        with run.resumable():
            result = _run_stage(session, number, stage)
        rates.record_route(stage_name(number, stage), result.route, result.cache)
        book.finished(number, result, model, run.events)

    unfreeze(base, len(base.layers), False)  # the saved model's backbone is frozen again
    with placement.strategy.scope():  # to measure it: no rate plays a part
        compile_model(model, fit_config, FALLBACK_RATE, inputs.steps)
    metrics = {"best_epoch": book.best_epoch, "epochs_run": run.history.last_epoch, "seconds": round(book.seconds, 2),
               "stage_rates": rates.table}
    if inputs.val_data is not None:
        loss, accuracy = model.evaluate(inputs.val_data, steps=inputs.val_steps if inputs.repeating else None,
                                        verbose=0)
        metrics.update(val_loss=float(loss), val_accuracy=float(accuracy))
    return metrics


def run_backbone(run: RunInfo) -> BackboneSpec:
    """The backbone a run was trained with, as its config.json records it; an export folder or
    a bare model.keras has no config.json, nor the dataset and split that fine-tuning reuses."""
    if not run.backbone:
        what = "an export folder" if (run.path / EXPORT_METADATA).is_file() else "a model without a config.json"
        raise TlcliError(
            f"{run.path} is {what}, not a run directory: fine-tuning needs the run's config.json (its "
            "backbone, dataset and split). Pass the run directory that `tlcli train` wrote."
        )
    return get_backbone(run.backbone)


def check_weight_decay(fit: FitConfig) -> None:
    """Weight decay acts on fine-tuning only through AdamW: the head's L2 penalty was set when it was built."""
    if fit.weight_decay > 0 and fit.optimizer != "adamw":
        raise TlcliError(
            f"--weight-decay {fit.weight_decay:g} does nothing with --optimizer {fit.optimizer} when fine-tuning "
            "(the head's L2 penalty was fixed in training). Add --optimizer adamw, or leave --weight-decay out."
        )


def _epochs_before(history: History, stage: str) -> int:
    """Epochs recorded by earlier stages (a resumed stage rewrites its own rows)."""
    return max((key for key, row in history.rows.items() if row["stage"] != stage), default=0)


@dataclass
class _Session:
    """What every stage of one fine-tuning run shares."""

    model: object
    base: object
    spec: BackboneSpec
    config: FinetuneConfig
    image_size: int
    inputs: StageInputs  # the images, for stages that run end to end
    rates: "_StageRates"
    run: TrainingRun  # its placement, dataset, folder, history, events and the images decoded once
    augmented: bool  # the training images are augmented (so no stage caches the frozen part's output)


def _run_stage(session: _Session, number: int, stage: Stage) -> "_StageResult":
    """Unfreeze the stage's layers, find its rate if it is auto, recompile and fit, on the frozen
    part's cached output when that pays (the stage's route), else end to end; the stage's epochs
    are backed up as they end."""
    model, base, config, run = session.model, session.base, session.config, session.run
    start = first_unfrozen_index(base, session.spec, stage.unfreeze)
    unfreeze(base, start, config.train_batch_norm)
    name = stage_name(number, stage)
    with model.distribute_strategy.scope():
        route = plan_route(model, base, session.spec, start, config.cache_features, stage.unfreeze, session.augmented)
    stage_model, inputs, cache = model, session.inputs, None
    if route.split is not None:
        decoded_bytes = sum(images.nbytes for images in run.decoded.caches.values() if images.in_memory)
        inputs, cache = cached_inputs(run.placement, run.dataset, route.split, session.image_size, config.fit,
                                      memory_budget=max(0, int(config.cache_memory * 2**30) - decoded_bytes),
                                      scratch_dir=run.run_dir, decoded=run.decoded)
        stage_model = route.split.upper
    try:
        rate, source = session.rates.rate(name, stage, config.fit.learning_rate, lambda: _find_stage_rate(
            stage_model, stage, config.fit, inputs, run.run_dir / f"lr_find_{name}.png", run.events))
        stage_fit = dataclasses.replace(config.fit, learning_rate=rate, epochs=stage.epochs_for(inputs.steps))
        with model.distribute_strategy.scope():  # recompiled after every change of what is trainable
            compile_model(stage_model, stage_fit, rate, inputs.steps * stage_fit.epochs)
        described = f"cached: {route.reason}; {cache.describe()}" if cache else f"{END_TO_END}: {route.reason}"
        run.events.stage(StageStart(
            number, stage.unfreeze, start, len(base.layers), count_parameters(model.trainable_weights),
            count_parameters(model.non_trainable_weights), rate, stage_fit.epochs, source, described,
        ))
        result = fit(
            stage_model, inputs.train_data, inputs.val_data, stage_fit,
            length=fit_length(stage_fit, inputs.steps), steps_per_epoch=inputs.steps, run_dir=run.run_dir,
            stage=name, history=run.history, first_epoch=_epochs_before(run.history, name), epoch=inputs.epoch,
            validation_steps=inputs.val_steps, placement=run.placement, events=run.events,
        )
    finally:
        if cache is not None:
            inputs.close()
    return _StageResult(result, described, cache)


@dataclass(frozen=True)
class _StageResult:
    fit: FitResult
    route: str  # how the stage ran, as its table said
    cache: CacheReport | None  # the frozen part's cache, built before the fit

    @property
    def best_epoch(self) -> int:
        return self.fit.best_epoch

    @property
    def seconds(self) -> float:
        return self.fit.seconds + (self.cache.seconds if self.cache else 0.0)


def _find_stage_rate(model, stage: Stage, fit_config: FitConfig, inputs: StageInputs, plot: Path,
                     events: Events) -> tuple[float, str]:
    """The rate the range test suggests for the stage's unfreezing (the weights stay as they
    were), or the stage's fallback rate when the test suggests none; its plot goes to `plot`."""
    test = range_test(model, inputs.endless(), fit_config)
    plot_range_test(test, plot)
    if test.suggestion is None:
        events.note(f"{stage.unfreeze}: the range test's loss never rose to three times its lowest "
                    f"({len(test.rates)} steps, {plot.name}); the stage trains at {stage.fallback_rate:g}.", WARNING)
        return stage.fallback_rate, "none found: fallback"
    events.note(f"{stage.unfreeze}: the range test suggests {test.suggestion:.2g} ({test.rule} rule, {plot.name}).")
    return test.suggestion, f"found, {test.rule} rule"


class _StageRates:
    """Each stage's learning rate and where it came from (its --stage, --learning-rate, or the range
    test), kept in the run's backup as found, so that a resumed stage trains at the rate it started
    with instead of testing again."""

    def __init__(self, path: Path):
        self.path = path
        self.table: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def rate(self, name: str, stage: Stage, default: float | None, find) -> tuple[float, str]:
        """The stage's own rate, else `default` (--learning-rate), else what `find` finds."""
        if stage.learning_rate is not None:
            self.table[name] = {"learning_rate": stage.learning_rate, "source": "given"}
        elif default is not None:
            self.table[name] = {"learning_rate": default, "source": "--learning-rate"}
        elif name not in self.table:
            rate, source = find()
            self.table[name] = {"learning_rate": rate, "source": source}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.table)
        entry = self.table[name]
        return entry["learning_rate"], entry["source"]

    def record_route(self, name: str, route: str, cache: CacheReport | None) -> None:
        """How the stage ran (cached or end to end), beside its rate."""
        entry = self.table.setdefault(name, {})
        entry["route"] = route
        if cache is not None:
            entry.update(cache_seconds=round(cache.seconds, 2), cache_bytes=cache.nbytes, cache_in_memory=cache.in_memory)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.table)


class _StageBook:
    """The bookkeeping between stages: the best loss so far and its weights (a stage that ends
    worse is rolled back to them), and, after each finished stage, the model's state and the
    book itself in the run's backup, so that --resume skips finished stages.

    The state file names its weights, written first, so that a kill leaves the two in step.
    """

    def __init__(self, folder: Path, evaluate, state: dict):
        self.folder, self.evaluate = folder, evaluate
        self.stages_done, self.best_loss = state["stages_done"], state["best_loss"]
        self.best_epoch, self.seconds = state["best_epoch"], state["seconds"]
        self.best_weights = None

    @classmethod
    def open(cls, folder: Path, model, evaluate, events: Events, stage_count: int, loss_name: str) -> "_StageBook":
        """The book of an interrupted run (its model restored to the last finished stage), or a new one."""
        saved = folder / "finished-stages.json"
        if saved.is_file():
            state = json.loads(saved.read_text())
            load_model_state(model, folder, state.pop("weights"))
            events.note(f"Resuming after stage {state['stages_done']} of {stage_count}.")
        else:
            state = {"stages_done": 0, "best_loss": evaluate(), "best_epoch": 0, "seconds": 0.0}
            events.note(f"Before fine-tuning: {loss_name} {state['best_loss']:.4f}")
        book = cls(folder, evaluate, state)
        book.best_weights = model.get_weights()
        return book

    def finished(self, number: int, result, model, events: Events) -> None:
        """Keep the stage if it ended no worse than the best so far, else roll back; then save."""
        self.seconds += result.seconds
        loss = self.evaluate()
        if loss <= self.best_loss:
            self.best_loss, self.best_epoch = loss, result.best_epoch
            self.best_weights = model.get_weights()
        else:
            model.set_weights(self.best_weights)
            events.note(f"Stage {number} ended worse (loss {loss:.4f} > {self.best_loss:.4f}): "
                        "rolled back to the best earlier weights.", WARNING)
        self.stages_done = number
        self.folder.mkdir(parents=True, exist_ok=True)
        name = save_model_state(model, self.folder, f"finished-stages-{number}")
        state = {"stages_done": number, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                 "seconds": self.seconds, "weights": name}
        write_json(self.folder / "finished-stages.json", state)
        for old in self.folder.glob("finished-stages-*"):
            if not old.name.startswith(f"{name}."):
                old.unlink()


def _validation_loss(model, inputs: StageInputs) -> float:
    """The loss on the validation images (the training images when there are none)."""
    data, steps = (inputs.val_data, inputs.val_steps) if inputs.val_data is not None else (inputs.train_data, inputs.steps)
    loss, _ = model.evaluate(data, steps=steps if inputs.repeating else None, verbose=0)
    return float(loss)


