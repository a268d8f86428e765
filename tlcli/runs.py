"""The run directory: what a training run leaves behind, written so that nothing is half-written.

    config.json   every resolved option, classes, image size, preprocessing, versions, data counts
    labels.txt    class names, one per line, in label order
    model.keras   the best model (RGB pixels in [0, 255] -> class probabilities)
    history.csv   epoch, stage, loss, accuracy, val_loss, val_accuracy, learning_rate
    curves.png    loss and accuracy per epoch, with stage boundaries (heads trained by gradient)
    penalty.png   cross-validated accuracy and log loss against the L2 penalty (solved heads)
    metrics.json  validation metrics of the saved model
    logs/         TensorBoard logs
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tlcli.errors import TlcliError

CONFIG = "config.json"
LABELS = "labels.txt"
MODEL = "model.keras"
HISTORY = "history.csv"
CURVES = "curves.png"
PENALTY = "penalty.png"
METRICS = "metrics.json"
LOGS = "logs"
BACKUP = ".backup"  # Keras BackupAndRestore state while a run is in progress
IN_PROGRESS = ".in-progress"
EXPORT_METADATA = "metadata.json"  # what `tlcli export` writes beside its model.keras
KERAS_ARCHITECTURE = "config.json"  # inside a .keras archive, beside the weights
_TRUSTED_MODULES = ("keras", "tlcli")  # the only code a model file may name


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb"):
    """A file handle whose content appears at `path` only when the block ends without error.

    A killed process or an exception leaves either the old file or none, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write a file so that a killed process leaves either the old file or the new one."""
    with atomic_file(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: Path, document) -> None:
    write_atomic(path, json.dumps(document, indent=2, default=str) + "\n")


def save_model_atomic(model, path: Path) -> None:
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(temporary)
    os.replace(temporary, path)


def default_run_dir(model_name: str, prefix: str = "") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{prefix}{model_name}"


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> Path:
    """Create (or reopen, with `resume`) a run directory, refusing to clobber an existing one."""
    path = Path(path)
    interrupted = (path / IN_PROGRESS).exists()
    if resume:
        if not interrupted:
            state = "is a finished run" if (path / MODEL).exists() else "has no interrupted run"
            raise TlcliError(
                f"--resume: {path} {state}. Resume continues a run that was stopped before its "
                "last epoch; start a new run with another --out or --overwrite."
            )
        return path
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            what = "holds an interrupted run" if interrupted else "already exists"
            raise TlcliError(
                f"Run directory {path} {what}. Use --resume to continue it, --overwrite to "
                "start over, or --out for another directory."
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / IN_PROGRESS).write_text("")
    return path


class Interrupted(TlcliError):
    exit_code = 130


@contextlib.contextmanager
def resumable(path: Path):
    """Turn Ctrl-C into a one-line message that says how to continue the run."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted. {path} keeps the last completed epoch: repeat the command with --resume "
            "to continue, or with --overwrite to start over."
        ) from None


def finish_run_dir(path: Path) -> None:
    shutil.rmtree(path / BACKUP, ignore_errors=True)
    (path / IN_PROGRESS).unlink(missing_ok=True)


@dataclass(frozen=True)
class RunInfo:
    """What a saved model needs to be used: where it is, its classes and input size."""

    path: Path  # the run directory
    model_path: Path
    class_names: tuple[str, ...]
    image_size: int
    backbone: str
    config: dict


def read_run(path: Path) -> RunInfo:
    """Read a run directory, or the folder of a `.keras` file with `labels.txt` beside it."""
    path = Path(path).expanduser()
    model_path = path if path.suffix == ".keras" else path / MODEL
    folder = model_path.parent
    if not model_path.is_file():
        raise TlcliError(
            f"{path} is not a tlcli run: {model_path.name} is missing. "
            "Pass a run directory written by `tlcli train` / `tlcli finetune`, or its model.keras."
        )
    config = {}
    if (folder / CONFIG).is_file():
        config = json.loads((folder / CONFIG).read_text())
    if (folder / LABELS).is_file():
        class_names = tuple(line for line in (folder / LABELS).read_text().splitlines() if line)
    elif config.get("class_names"):
        class_names = tuple(config["class_names"])
    else:
        raise TlcliError(
            f"{model_path} has no {LABELS} beside it, so its class names are unknown. "
            f"Put a {LABELS} (one class per line, in label order) next to it."
        )
    return RunInfo(
        path=folder,
        model_path=model_path,
        class_names=class_names,
        image_size=int(config.get("image_size", 0)),
        backbone=config.get("model", ""),
        config=config,
    )


def load_keras_model(path: Path):
    """A `.keras` file written by tlcli, loaded in Keras's safe mode; one that will not load is a
    one-line TlcliError."""
    from tlcli.runtime import import_keras

    check_keras_file(path)
    keras = import_keras()
    import tlcli.layers  # noqa: F401  (registers tlcli's layers for safe-mode loading)

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
        info = RunInfo(info.path, info.model_path, info.class_names, image_size, info.backbone, info.config)
    return model, info
