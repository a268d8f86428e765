"""Loading the models tlcli saved: run directories' and exports' `.keras` files, in Keras's safe
mode, refused in one line when damaged or naming code outside Keras and tlcli."""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from pathlib import Path

from tlcli.distribute.placement import Placement
from tlcli.errors import TlcliError
from tlcli.runs.directory import read_run
from tlcli.runs.names import KERAS_ARCHITECTURE

_TRUSTED_MODULES = ("keras", "tlcli")  # the only code a model file may name


def load_keras_model(path: Path):
    """A `.keras` file written by tlcli, loaded in Keras's safe mode; one that will not load is a
    one-line TlcliError."""
    from tlcli.runtime import import_keras

    check_keras_file(path)
    keras = import_keras()
    import tlcli.models.layers  # noqa: F401  (registers tlcli's layers for safe-mode loading)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras's messages run to many lines: the first says what failed
        first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise TlcliError(f"{path} cannot be loaded as a Keras model: {first_line}") from error


def check_keras_file(path: Path) -> None:
    """Refuse a damaged `.keras` file, or one naming code outside Keras and tlcli, in a sentence:
    Keras calls a truncated archive "File not found" and answers a foreign class with the whole config."""
    try:
        with zipfile.ZipFile(path) as archive:
            architecture = json.loads(archive.read(KERAS_ARCHITECTURE))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error):
        raise TlcliError(
            f"{path} is damaged or not a Keras model file (a .keras file is a zip archive holding "
            f"{KERAS_ARCHITECTURE}). Copy it again, or train the run again."
        ) from None
    foreign = _foreign_class(architecture)
    if foreign:
        raise TlcliError(
            f"{path} names {foreign} in its {KERAS_ARCHITECTURE}, neither a Keras nor a tlcli class, "
            "and tlcli loads no other code. Use the model.keras that tlcli wrote, unedited."
        )


def _foreign_class(node) -> str | None:
    """The first `module.class_name` a Keras config names outside Keras and tlcli, if any."""
    if isinstance(node, dict):
        module = node.get("module")
        if isinstance(module, str) and "class_name" in node and module.split(".")[0] not in _TRUSTED_MODULES:
            return f"{module}.{node['class_name']}"
        children = node.values()
    else:
        children = node if isinstance(node, list) else ()
    return next((found for child in children if (found := _foreign_class(child))), None)


def load_run_model(path: Path):
    """(Keras model, RunInfo) for a run directory or `.keras` file."""
    info = read_run(path)
    model = load_keras_model(info.model_path)
    image_size = info.image_size or int(model.input_shape[1])
    if info.image_size != image_size:
        info = dataclasses.replace(info, image_size=image_size)
    return model, info


def load_placed_model(path: Path, placement: Placement):
    """(Keras model, RunInfo) of a run, its variables placed by the strategy and computing in
    the placement's precision."""
    with placement.strategy.scope():
        model, info = load_run_model(path)
    _set_model_precision(model, placement.precision)
    return model, info


def _set_model_precision(model, precision: str) -> None:
    """Give a loaded model the run's precision policy, as a freshly built one gets it.

    A saved model keeps the policy it was trained under, whatever the global policy is now.
    The head's first and last layers, "standardization" and "predictions", stay float32
    (see `tlcli.models.build.build_head`).
    """
    def set_layers(layer):
        for inner in getattr(layer, "layers", ()):
            if inner.name not in ("standardization", "predictions"):
                inner.dtype_policy = precision
            set_layers(inner)

    set_layers(model)
