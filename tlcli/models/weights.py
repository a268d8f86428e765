"""Where a backbone's starting weights come from: ImageNet, nothing, a file, or an earlier run."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tlcli.errors import TlcliError
from tlcli.models.backbones import BackboneSpec, keras_cache_dir
from tlcli.runs.names import MARKER, MODEL
from tlcli.runs.outputs import check_uploaded
from tlcli.storage import check_readable, fetch, is_url, location

WEIGHTS_HELP = "imagenet, none, a weights file (.h5 / .weights.h5), a run directory or a .keras model"


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "imagenet" | "none" | "file" | "model"
    path: Path | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else str(self.path)


def parse_weights(value: str) -> WeightsSource:
    """Read a --weights value; paths must exist."""
    lowered = value.strip().lower()
    if lowered == "imagenet":
        return WeightsSource("imagenet")
    if lowered in ("none", "random"):
        return WeightsSource("none")
    path = _local_weights(value) if is_url(value) else Path(value).expanduser()
    if path.is_dir():
        model_file = path / "model.keras"
        if not model_file.is_file():
            raise TlcliError(
                f"--weights {value}: the folder has no model.keras, so it is not a tlcli run. "
                f"Expected {WEIGHTS_HELP}."
            )
        return WeightsSource("model", _check_format(model_file, value, "keras"))
    if path.is_file():
        if path.suffix == ".keras":
            return WeightsSource("model", _check_format(path, value, "keras"))
        if path.suffix in (".h5", ".hdf5"):
            return WeightsSource("file", _check_format(path, value, "h5"))
        raise TlcliError(
            f"--weights {value}: {path.suffix or 'no extension'} is not a weights format. "
            f"Expected {WEIGHTS_HELP}."
        )
    raise TlcliError(f"--weights {value}: no such file or folder. Expected {WEIGHTS_HELP}.")


def _local_weights(value: str) -> Path:
    """A local copy of a --weights URL: its file, or a run folder's model.keras."""
    url = location(value.strip())
    check_readable(url, "--weights")
    if url.is_dir():
        check_uploaded(url, f"--weights {value}")
        return fetch(url, "--weights", names=(MODEL, MARKER))
    return fetch(url, "--weights")


def _is_hdf5(path: Path) -> bool:
    import h5py  # a Keras dependency

    return bool(h5py.is_hdf5(str(path)))


_FORMATS = {"keras": ("a Keras model (a zip archive)", zipfile.is_zipfile), "h5": ("an HDF5 weights file", _is_hdf5)}


def _check_format(path: Path, value: str, kind: str) -> Path:
    """`path`, resolved, if its content is the format its name says; else a one-line error."""
    expected, recognise = _FORMATS[kind]
    try:
        recognised = recognise(path)
    except OSError as error:
        raise TlcliError(f"--weights {value} cannot be read ({error.strerror or error}). Check the file.") from None
    if not recognised:
        raise TlcliError(
            f"--weights {value} is not {expected}, whatever its name says (damaged, or another kind of file). "
            f"Expected {WEIGHTS_HELP}."
        )
    return path.resolve()


_FETCH_FAILURE = re.compile(r"URL fetch failure on (\S+): ")


def build_base(spec: BackboneSpec, image_size: int, weights: WeightsSource):
    """The backbone without its ImageNet top, for square RGB images of `image_size`."""
    constructor = spec.build_constructor()
    input_shape = (image_size, image_size, 3)
    if weights.kind == "model":
        return _base_from_model(spec, image_size, weights.path)
    keras_weights = {"imagenet": "imagenet", "none": None, "file": str(weights.path)}[weights.kind]
    try:
        return constructor(include_top=False, weights=keras_weights, input_shape=input_shape)
    except ValueError as error:
        if weights.kind != "file":
            raise
        first_line = str(error).strip().splitlines()[0]
        raise TlcliError(
            f"--weights {weights.path} does not fit {spec.name} without its top: {first_line} "
            f"Use a file saved from {spec.name} (include_top=False), or --weights none."
        ) from error
    except Exception as error:
        # Keras raises a bare Exception when the download fails; catch only that one.
        match = _FETCH_FAILURE.search(str(error))
        if weights.kind != "imagenet" or match is None:
            raise
        url = match.group(1)
        raise TlcliError(
            f"ImageNet weights for {spec.name} could not be downloaded ({url}). "
            f"Without internet, place {spec.weights_file} in {keras_cache_dir()}, "
            "or use --weights none or --weights PATH to a weights file."
        ) from error


def _base_from_model(spec: BackboneSpec, image_size: int, model_path: Path):
    """A fresh backbone carrying the trained backbone weights of an earlier tlcli model."""
    from tlcli.models.saved import load_keras_model

    try:
        source = load_keras_model(model_path)
    except TlcliError as error:  # a damaged or foreign file: say which option named it
        raise TlcliError(f"--weights {error}") from error
    source_base = find_base(source, spec)
    base = spec.build_constructor()(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    base.set_weights(source_base.get_weights())
    return base


def keras_model_name_matches(name: str, spec: BackboneSpec) -> bool:
    """Whether a Keras application's model name is this row's: Keras names them vgg16, inception_v3,
    efficientnetv2-b0, convnext_tiny, MobileNetV3Small..., tlcli without case, dashes or underscores."""
    return re.sub(r"[-_]", "", name).lower() == spec.name


def find_base(model, spec: BackboneSpec):
    """The backbone inside a tlcli model (a nested model named like the Keras application)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and keras_model_name_matches(layer.name, spec):
            return layer
    names = ", ".join(layer.name for layer in model.layers)
    raise TlcliError(
        f"The model holds no {spec.name} backbone (its layers: {names}). "
        f"Use a run trained with --model {spec.name}."
    )
