"""The page's first two parts: what the run is (its model, data, settings and versions) and how
it learnt (a solved head's penalty path, or the curves, and a fine-tuning's stages)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from tlcli.report.sources import RunSource
from tlcli.report.text import MISSING, number, setting, short
from tlcli.report.thumbnails import picture_uri
from tlcli.runs.names import CURVES, PENALTY
from tlcli.training.config import FitConfig, TrainConfig

# Recorded settings that the facts table shows in a row of their own, or that are not options.
_SHOWN_APART = {"data", "out", "model", "weights", "image_size", "labels", "source", "source_run", "kind",
                "class_names", "counts", "versions", "distribution", "augmentation", "route", "preprocessing",
                "layout", "global_batch_size", "skipped_files", "stages"}
MAX_COUNTED_CLASSES = 60  # more classes: the images per split, without the table per class


@dataclass
class RunFacts:
    facts: list[tuple[str, str]]  # (what, value)
    options: list[tuple[str, str, str]]  # (option, value, default) of the options not at their default
    splits: list[str]
    counts: list[tuple[str, list[str]]]  # (class, images per split)
    totals: list[str]  # images per split
    versions: list[tuple[str, str]]


@dataclass
class Stage:
    name: str
    learning_rate: str
    source: str  # where the rate came from: given, a range test's rule, a fallback
    route: str
    picture: str | None  # the range test's plot


@dataclass
class Learning:
    route: str
    penalty: list[dict] = field(default_factory=list)  # {C, cv_accuracy, cv_log_loss, chosen}
    penalty_summary: str = ""
    penalty_picture: str | None = None
    curves_picture: str | None = None
    history_columns: list[str] = field(default_factory=list)
    history: list[list[str]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.penalty or self.curves_picture or self.history or self.stages)


def run_facts(run: RunSource) -> RunFacts:
    config = run.config
    counts = config.get("counts") or {}
    splits = [split for split in ("train", "val", "test") if split in counts]
    classes = list(run.class_names) if len(run.class_names) <= MAX_COUNTED_CLASSES else []
    return RunFacts(
        facts=_facts(run),
        options=changed_options(config),
        splits=splits,
        counts=[(name, [number(counts[split].get(name, 0)) for split in splits]) for name in classes],
        totals=[number(sum(counts[split].values())) for split in splits],
        versions=[(name, str(version)) for name, version in (config.get("versions") or {}).items()],
    )


def _facts(run: RunSource) -> list[tuple[str, str]]:
    config, metrics = run.config, run.metrics
    kind = {"train": "trained by tlcli train", "finetune": f"fine-tuned from {config.get('source_run', MISSING)}"}
    distribution = config.get("distribution") or {}
    rows = [
        ("folder", str(run.folder)),
        ("what", kind.get(config.get("kind"), run.kind or "a saved model")),
        ("backbone", run.backbone or MISSING),
        ("weights", setting(config.get("weights", MISSING))),
        ("image size", f"{run.image_size} px" if run.image_size else MISSING),
        ("classes", f"{len(run.class_names)}: {', '.join(run.class_names[:20])}"
                    + (f" and {len(run.class_names) - 20} more" if len(run.class_names) > 20 else "")),
        ("head", _head(config, metrics)),
        ("dataset", str(config.get("data", MISSING)) + (f" (labels {config['labels']})" if config.get("labels") else "")),
        ("dataset checksum", run.dataset_checksum() or "not recorded (the run records the data's path and counts)"),
        ("augmentation", _augmentation(config.get("augmentation"))),
        ("validation", _validation(metrics)),
        ("weights sha256", metrics.get("weights_sha256", MISSING)),
        ("ran on", f"{distribution.get('strategy', MISSING)}, {distribution.get('replicas', 1)} replica(s), "
                   f"{distribution.get('precision', 'float32')}" if distribution else MISSING),
    ]
    return [(name, value) for name, value in rows if value not in (MISSING, "")]


def _head(config: dict, metrics: dict) -> str:
    route = config.get("route") or metrics.get("route") or ""
    dense = setting(config.get("dense")) if config.get("dense") else "linear"
    return f"{dense} on {config.get('pooling', 'avg')} pooling" + (f", {route}" if route else "")


def _augmentation(recorded: dict | None) -> str:
    if not recorded:
        return MISSING
    used = [f"{name} {short(value)}" for name, value in recorded.items() if value not in (0, 0.0, "none", None)]
    return ", ".join(used) or "none"


def _validation(metrics: dict) -> str:
    parts = [f"{name.replace('val_', '')} {number(metrics[name])}" for name in ("val_accuracy", "val_loss")
             if isinstance(metrics.get(name), float)]
    return ", ".join(parts) or MISSING


def option_defaults(kind: str | None) -> dict:
    """Each option's default as config.json would record it. A fine-tuning's learning rate is
    left out: each stage has its own, in the stage table."""
    fields = list(dataclasses.fields(FitConfig))
    if kind == "train":
        fields += [item for item in dataclasses.fields(TrainConfig) if item.name != "fit"]
    defaults = {}
    for item in fields:
        if item.default is not dataclasses.MISSING:
            defaults[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            defaults[item.name] = item.default_factory()
    if kind != "train":
        defaults.pop("learning_rate")
    return json.loads(json.dumps(defaults, default=str))  # tuples as lists, as config.json has them


def changed_options(config: dict) -> list[tuple[str, str, str]]:
    defaults = option_defaults(config.get("kind"))
    return [(name.replace("_", "-"), setting(config[name]), setting(default)) for name, default in defaults.items()
            if name in config and name not in _SHOWN_APART and config[name] != default]


def learning(run: RunSource) -> Learning:
    metrics = run.metrics
    found = Learning(route=str(run.config.get("route") or metrics.get("route") or ""))
    solver = metrics.get("solver") or {}
    if solver.get("path"):
        chosen = solver.get("penalty_C")
        found.penalty = [{"C": short(row.get("C")), "cv_accuracy": number(row.get("cv_accuracy")),
                          "cv_log_loss": number(row.get("cv_log_loss")), "chosen": row.get("C") == chosen}
                         for row in solver["path"]]
        found.penalty_summary = (f"L2 penalty C = {short(chosen)}, chosen by {solver.get('folds', MISSING)}-fold "
                                 f"cross-validated accuracy {number(solver.get('cv_accuracy'))}")
    found.penalty_picture = picture_uri(run.pictures.get(PENALTY))
    found.curves_picture = picture_uri(run.pictures.get(CURVES))
    if run.history:
        found.history_columns = list(run.history[0])
        found.history = [[row.get(column) or "" for column in found.history_columns] for row in run.history]
    for name, entry in (metrics.get("stage_rates") or {}).items():
        found.stages.append(Stage(name, short(entry.get("learning_rate")), str(entry.get("source", MISSING)),
                                  str(entry.get("route", MISSING)), picture_uri(run.range_test_plot(name))))
    return found
