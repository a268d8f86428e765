"""`tlcli calibrate`: temperature scaling of a run's probabilities, fitted on its validation images.

One number T divides every logit; it is chosen by minimising the validation log loss, so the top
class of every image stays what it was and only the confidence moves. The model gains a
`Temperature` layer (or has its T replaced), so `model.keras` and every export give calibrated
probabilities.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.data.recorded import run_dataset
from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.inference.metrics import calibration
from tlcli.inference.predict import predict_samples
from tlcli.runs.directory import read_json, read_run
from tlcli.runs.atomic import save_model_atomic, write_json
from tlcli.runs.names import IN_PROGRESS, METRICS, MODEL
from tlcli.runs.locks import lock_output, locks_outputs
from tlcli.runs.staging import staged_output
from tlcli.storage import Location, Url

TEMPERATURE_LAYER = "temperature"
TEMPERATURES = (0.05, 20.0)  # the range T is searched in
MIN_IMAGES = 10  # fewer validation images cannot support a temperature
MIN_GAIN = 0.01  # a temperature that lowers the validation log loss by less than 1% is not applied


@dataclass(frozen=True)
class Calibration:
    run_dir: Path
    model_path: Path  # the model file that now holds the temperature
    temperature: float
    images: int  # validation images T was fitted on
    before: dict  # ece, brier and log_loss on them, uncalibrated
    after: dict  # the same, calibrated
    applied: bool = True  # False: the model was left as it was (the fit did not help enough)


def fit_temperature(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The T that minimises the log loss of softmax(log(p) / T) (a one-dimensional convex search)."""
    from scipy.optimize import minimize_scalar

    logits = _logits(probabilities)

    def log_loss(log_temperature: float) -> float:
        return _log_loss(y_true, _scaled(logits, np.exp(log_temperature)))

    low, high = np.log(TEMPERATURES)
    return float(np.exp(minimize_scalar(log_loss, bounds=(low, high), method="bounded",
                                        options={"xatol": 1e-6}).x))


def check_supported(y_true: np.ndarray, probabilities: np.ndarray, data: Location) -> None:
    """Refuse validation images that cannot support a temperature: too few, or all classified
    right (then ever sharper probabilities only look better, and T runs to its bound)."""
    if len(y_true) < MIN_IMAGES:
        raise TlcliError(f"{data} has {len(y_true)} validation image(s) for this run; a temperature fitted on fewer "
                         f"than {MIN_IMAGES} says nothing. The model is unchanged. Calibrate with more validation images.")
    if np.all(np.argmax(probabilities, axis=1) == y_true):
        raise TlcliError(f"The model classifies all {len(y_true)} validation images of {data} right, so no temperature "
                         "can be fitted on them (sharper always looks better). The model is unchanged. Calibrate on "
                         "validation images it sometimes gets wrong (more, or harder).")


def _logits(probabilities: np.ndarray) -> np.ndarray:
    """Logits up to a constant per row, as the Temperature layer takes them (log of the clipped probabilities)."""
    return np.log(np.maximum(probabilities.astype(np.float64), 1e-12))


def _scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def _log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    return float(-np.log(np.maximum(probabilities[np.arange(len(y_true)), y_true], 1e-300)).mean())


def _scores(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    result = calibration(y_true, probabilities)
    return {"ece": result["ece"], "brier": result["brier"], "log_loss": _log_loss(y_true, probabilities)}


@dataclass(frozen=True)
class CalibrateConfig:
    """What `tlcli calibrate` is asked: a run (its directory or its model.keras), and where its
    dataset is now, if it has moved since training."""

    model: Location
    data: Path | None = None  # None: the dataset the run records
    batch_size: int = 32


@locks_outputs
def calibrate(config: CalibrateConfig, events: Events = SILENT) -> Calibration:
    """Fit T on the run's validation images (their prediction counted through `events`) and save
    the calibrated model in the run directory.

    A run at a URL is downloaded whole, calibrated, and published back as a new output is (runs.staging)."""
    if not isinstance(config.model, Url):
        return _calibrate(config.model, config, events)
    folder = read_run(config.model).path  # first: refuses what is not a run, or not uploaded whole
    with staged_output(folder, "run", overwrite=True, resume=True) as staged:
        result = _calibrate(staged.local, config, events)
        return dataclasses.replace(result, run_dir=staged.target, model_path=staged.public(result.model_path))


def _calibrate(run_path: Path, config: CalibrateConfig, events: Events) -> Calibration:
    from tlcli.models.layers import Temperature
    from tlcli.models.saved import load_run_model
    from tlcli.runtime import import_keras

    keras = import_keras()
    run = read_run(run_path)
    if run_path.is_file() and run_path.resolve() != (run.path / MODEL).resolve():
        raise TlcliError(f"{run_path} is not the run's {MODEL}: calibrate replaces the run's own model. "
                         f"Pass {run.path} (or its {MODEL}).")
    if run.multi_label:
        raise TlcliError(f"{run.path} is a multi-label run: temperature scaling calibrates a softmax, and its "
                         "sigmoid labels are decided by the thresholds tuned at training. Calibrate a single-label run.")
    lock_output(run.path, str(run.path), "a calibration")
    if (run.path / IN_PROGRESS).exists():
        raise TlcliError(f"{run.path} holds a run that has not finished. Finish it (the same command with "
                         "--resume), then calibrate.")
    if not run.config:
        raise TlcliError(f"{run.path} has no config.json: calibration needs the run's validation split. "
                         "Pass the run directory that `tlcli train` or `tlcli finetune` wrote.")
    dataset, _ = run_dataset(run, config.data, strict=False)
    samples = dataset.splits.get("val", ())
    if not samples:
        raise TlcliError(f"{dataset.root} has no validation images for this run, and temperature scaling is fitted "
                         "on them. Train with --val-split above 0 (or a val/ folder), then calibrate.")
    metrics_path = run.path / METRICS
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}  # damaged: refused before any change
    model, info = load_run_model(run.path)
    if model.layers[-1].name == TEMPERATURE_LAYER:  # calibrated before: fit T afresh on the raw output
        model = keras.Model(model.inputs, model.layers[-1].input)
    with events.counting("Predicting", len(samples)) as advance:
        indices, probabilities = predict_samples(model, samples, info.image_size, config.batch_size, advance)
    y_true = np.array([samples[index].label for index in indices])
    check_supported(y_true, probabilities, dataset.root)
    temperature = fit_temperature(y_true, probabilities)
    result = Calibration(run.path, info.model_path, temperature, len(y_true), _scores(y_true, probabilities),
                         _scores(y_true, _scaled(_logits(probabilities), temperature)))
    if result.after["log_loss"] > result.before["log_loss"] * (1 - MIN_GAIN):
        return dataclasses.replace(result, applied=False)  # already as calibrated as these images can tell
    outputs = Temperature(temperature, name=TEMPERATURE_LAYER, dtype="float32")(model.outputs[0])
    save_model_atomic(keras.Model(model.inputs, outputs, name=model.name), info.model_path)
    metrics["calibration"] = {"temperature": temperature, "images": result.images,
                              "before": result.before, "after": result.after}
    write_json(metrics_path, metrics)
    return result
