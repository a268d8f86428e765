"""The run directory: what a training run leaves behind, and how tlcli reads it back.

    config.json   every resolved option, classes, image size, preprocessing, versions, data counts
    labels.txt    class names, one per line, in label order
    model.keras   the best model (RGB pixels in [0, 255] -> class probabilities)
    history.csv   epoch, stage, loss, accuracy, val_loss, val_accuracy, learning_rate
    curves.png    loss and accuracy per epoch, with stage boundaries (heads trained by gradient)
    penalty.png   cross-validated accuracy and log loss against the L2 penalty (solved heads)
    metrics.json  validation metrics of the saved model
    logs/         TensorBoard logs
    .tlcli        the marker: a run, and the files tlcli wrote in it (runs.outputs)

A run directory is claimed and written through the output policy (`runs.outputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tlcli.errors import TlcliError
from tlcli.runs.names import (
    CONFIG,
    EVALUATION,
    EXPORT_METADATA,
    IN_PROGRESS,
    LABELS,
    MARKER,
    METRICS,
    MODEL,
)
from tlcli.runs.outputs import abandon_unstarted, check_uploaded, claim_output, replaced_note, start_output_dir
from tlcli.storage import Location, Url, check_readable, fetch, location


def default_run_dir(model_name: str, prefix: str = "") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{prefix}{model_name}"


def read_json(path: Location) -> dict:
    """A JSON object that tlcli wrote (in a folder or at a URL); a damaged file is a one-line error naming it."""
    try:
        document = json.loads((path if isinstance(path, Url) else Path(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        reason = (error.strerror or error) if isinstance(error, OSError) else str(error).splitlines()[0]
        raise TlcliError(
            f"{path} cannot be read as JSON ({reason}). It is damaged: restore it from a copy, "
            "or write it again with the command that made it."
        ) from None
    if not isinstance(document, dict):
        raise TlcliError(f"{path} holds JSON but not an object (it is damaged). Restore it from a copy.")
    return document


def claim_run_dir(path: Path, *, overwrite: bool, resume: bool, data: Path | None = None,
                  sources: dict[Path, str] | None = None) -> None:
    """Claim a run directory (see claim_output); --resume needs an interrupted run in it."""
    path = Path(path)
    claim_output(path, "run", overwrite=overwrite, resume=resume, data=data, sources=sources)
    if resume and not (path / IN_PROGRESS).exists():
        state = "is a finished run" if (path / MODEL).exists() else "has no interrupted run"
        raise TlcliError(
            f"--resume: {path} {state}. Resume continues a run that was stopped before its "
            "last epoch; start a new run with another --out or --overwrite."
        )


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool, data: Path | None = None,
                    sources: dict[Path, str] | None = None) -> Path:
    """Claim a run directory (see claim_output), then create it, or reopen it with `resume`."""
    path = Path(path)
    claim_run_dir(path, overwrite=overwrite, resume=resume, data=data, sources=sources)
    if not resume:
        start_output_dir(path, "run")
    return path


class Interrupted(TlcliError):
    exit_code = 130


@contextlib.contextmanager
def resumable(path: Path, own: Path | None = None):
    """Turn Ctrl-C into a one-line message that says how to continue the run; an error before the
    run saved any progress takes the run away again (runs.outputs.abandon_unstarted): `own`, this
    process's folder where it is not `path` (a cluster worker's scratch folder), never another's."""
    try:
        yield
    except KeyboardInterrupt:
        replaced = replaced_note(path)
        raise Interrupted(
            f"Interrupted. {path} keeps the last completed epoch: repeat the command with --resume "
            "to continue, or with --overwrite to start over" + (f"; {replaced}." if replaced else ".")
        ) from None
    except Exception:
        abandon_unstarted(own or path)
        raise


@dataclass(frozen=True)
class RunInfo:
    """What a saved model needs to be used: where it is, its classes and input size."""

    path: Location  # the run directory: a URL for a run read from one
    model_path: Path  # always local: a URL run's is a copy
    class_names: tuple[str, ...]
    image_size: int
    backbone: str
    config: dict

    @property
    def model_location(self) -> Location:
        """Where the model is: `model_path`, or its URL for a run read from one."""
        return self.path / self.model_path.name if isinstance(self.path, Url) else self.model_path

    @property
    def multi_label(self) -> bool:
        return bool(self.config.get("multi_label"))

    @property
    def dataset_places(self) -> tuple:
        """Where the run's recorded dataset lives (DATA, a label file's folder): no output may enter it."""
        data, labels = self.config.get("data"), self.config.get("labels")
        return tuple(place for place in (data and location(data), labels and location(labels).parent) if place)

    def thresholds(self) -> dict[str, float]:
        """A multi-label run's per-label decision thresholds (metrics.json), {} when it has none."""
        path = self.path / METRICS
        return dict(read_json(path).get("thresholds") or {}) if path.is_file() else {}


_RUN_FILES = (MODEL, CONFIG, LABELS, METRICS, EVALUATION, EXPORT_METADATA, MARKER)  # what readers of a run read


def read_run(path: Location) -> RunInfo:
    """Read a run directory, or the folder of a `.keras` file with `labels.txt` beside it.

    A run at a URL is read from a local copy of its files (once per process); its `path` stays the URL.
    """
    path = _as_place(path).expanduser()
    model_path = path if path.suffix == ".keras" else path / MODEL
    folder = model_path.parent
    if isinstance(path, Url):
        check_readable(path, "The run")
    check_uploaded(folder, path)
    if not model_path.is_file():
        raise TlcliError(
            f"{path} is not a tlcli run: {model_path.name} is missing. "
            "Pass a run directory written by `tlcli train` / `tlcli finetune`, or its model.keras."
        )
    if isinstance(folder, Url):
        local = fetch(folder, "The run", names=tuple(dict.fromkeys((model_path.name, *_RUN_FILES))))
        try:
            return dataclasses.replace(read_run(local / model_path.name), path=folder)
        except TlcliError as error:
            raise TlcliError(str(error).replace(str(local), str(folder))) from None
    config = {}
    if (folder / CONFIG).is_file():
        config = read_json(folder / CONFIG)
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


def _as_place(path: Location) -> Location:
    return path if isinstance(path, Url) else Path(path)
