"""The run directory: what a training run leaves behind, written so that nothing is half-written.

    config.json   every resolved option, classes, image size, preprocessing, versions, data counts
    labels.txt    class names, one per line, in label order
    model.keras   the best model (RGB pixels in [0, 255] -> class probabilities)
    history.csv   epoch, stage, loss, accuracy, val_loss, val_accuracy, learning_rate
    curves.png    loss and accuracy per epoch, with stage boundaries (heads trained by gradient)
    penalty.png   cross-validated accuracy and log loss against the L2 penalty (solved heads)
    metrics.json  validation metrics of the saved model
    logs/         TensorBoard logs

Every output folder a command writes (run, tuning search, export) is claimed first
(`claim_output`): locked against a second writer, checked to be writable, kept apart from the
dataset, and replaced by --overwrite only when tlcli itself made it (its `.tlcli` marker, or the
files earlier versions left). Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from tlcli.errors import TlcliError
from tlcli.runs.locks import lock_output
from tlcli.storage import Location, Url, atomic_url_file, check_readable, fetch

CONFIG = "config.json"
LABELS = "labels.txt"
MODEL = "model.keras"
HISTORY = "history.csv"
CURVES = "curves.png"
PENALTY = "penalty.png"
METRICS = "metrics.json"
LOGS = "logs"
BACKUP = ".backup"  # per-epoch and per-stage backups while a run is in progress
IN_PROGRESS = ".in-progress"
EVALUATION = "evaluation.json"  # what `tlcli evaluate` writes into its reports folder
EXPORT_METADATA = "metadata.json"  # what `tlcli export` writes beside its model.keras
KERAS_ARCHITECTURE = "config.json"  # inside a .keras archive, beside the weights
MARKER = ".tlcli"  # names the kind of folder tlcli made: run, tune, export, explain or pack
UPLOADING = "uploading"  # the marker's state while a folder is uploaded to a URL (runs.remote)
TUNE_SETTINGS = "tune.json"  # a tuning directory's search
LEADERBOARD = "leaderboard.json"  # a tuning directory's finished trials


@contextlib.contextmanager
def atomic_file(path: Location, mode: str = "wb"):
    """A file handle whose content appears at `path` only when the block ends without error.

    A killed process or an exception leaves either the old file or none, never half of one.
    At a URL, the file is written under a temporary name, then renamed (storage.atomic_url_file).
    """
    if isinstance(path, Url):
        with atomic_url_file(path, mode) as handle:
            yield handle
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~umask())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def write_atomic(path: Location, content: str | bytes) -> None:
    """Write a file so that a killed process leaves either the old file or the new one."""
    with atomic_file(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def _read_umask() -> int:
    current = os.umask(0)  # reading it means setting it, so it is set back at once
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once, at import: read again while a checkpoint thread writes, it would race


def umask() -> int:
    """The process's umask, as it was when tlcli was imported."""
    return _UMASK


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


OUTPUT_KINDS = {
    "run": "a training run", "tune": "a tuning search", "export": "an export", "explain": "tlcli explain's pictures",
    "pack": "a packed dataset",
}
# What --resume continues from: an interrupted folder without any of these holds nothing to resume.
_PROGRESS = {"run": (HISTORY, BACKUP), "tune": (LEADERBOARD,)}
_INTERRUPTED = {"run": "an interrupted run", "tune": "an interrupted search"}


def _as_place(path: Location) -> Location:
    return path if isinstance(path, Url) else Path(path)


def _lexists(path: Location) -> bool:
    return path.exists() if isinstance(path, Url) else os.path.lexists(path)


def output_kind(path: Location) -> str | None:
    """"run", "tune" or "export" for a folder tlcli made, by its marker or by the files earlier
    versions left in it; None for any other folder, which tlcli never writes into or replaces."""
    path = _as_place(path)
    if path.is_symlink() or not path.is_dir():
        return None
    if _lexists(path / MARKER):
        kind = _json_object(path / MARKER).get("kind")
        return kind if kind in OUTPUT_KINDS else None
    if _json_object(path / CONFIG).get("kind") in ("train", "finetune") and (path / LABELS).is_file():
        return "run"
    if {"search", "objective", "space"} <= _json_object(path / TUNE_SETTINGS).keys():
        return "tune"
    if {"files", "class_names"} <= _json_object(path / EXPORT_METADATA).keys() and (path / LABELS).is_file():
        return "export"
    return None


def write_marker(folder: Path, kind: str) -> None:
    """Mark `folder` as a `kind` folder made by tlcli, so that --overwrite may replace it."""
    write_json(Path(folder) / MARKER, marker_document(kind))


def marker_document(kind: str, *, uploading: bool = False) -> dict:
    """What a `.tlcli` marker holds. A folder being uploaded to a URL (runs.remote) is marked
    `uploading` until its last file is there: readers refuse it, --overwrite may replace it."""
    from tlcli import __version__

    return {"kind": kind, "tlcli": __version__, **({"state": UPLOADING} if uploading else {})}


def is_uploading(folder: Location) -> bool:
    """Whether `folder` is a tlcli folder whose upload to a URL has not finished (or stopped part-way)."""
    return _json_object(_as_place(folder) / MARKER).get("state") == UPLOADING


def check_uploaded(folder: Location, name: Location | str) -> None:
    """Refuse, in one line, a folder whose upload has not finished: some of its files may be
    missing, or an older output's."""
    if is_uploading(folder):
        raise TlcliError(
            f"{name} is still being uploaded, or its upload stopped part-way, so it is not complete. "
            "Wait for the command writing it to finish, or write it again (with --overwrite)."
        )


def _json_object(path: Path) -> dict:
    """The JSON object in `path`; {} when it is missing, unreadable or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_json(path: Path) -> dict:
    """A JSON object that tlcli wrote; a damaged file is a one-line error naming it."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        reason = (error.strerror or error) if isinstance(error, OSError) else str(error).splitlines()[0]
        raise TlcliError(
            f"{path} cannot be read as JSON ({reason}). It is damaged: restore it from a copy, "
            "or write it again with the command that made it."
        ) from None
    if not isinstance(document, dict):
        raise TlcliError(f"{path} holds JSON but not an object (it is damaged). Restore it from a copy.")
    return document


def check_writable_folder(folder: Location, name: str) -> None:
    """Refuse, before anything is written, a folder that cannot be made or written in: a file, a
    path under a file, or a place this process may not write to. `name` starts the message.
    At a URL only what can be told without writing is checked: the scheme, the store, access."""
    if isinstance(folder, Url):
        check_readable(folder, "The output folder")
        _probe_writing(folder, name)
        return
    existing = Path(os.path.abspath(folder))
    while not os.path.exists(existing):
        existing = existing.parent
    if not existing.is_dir():
        raise TlcliError(f"{name}: {existing} is a file, where a folder is needed. Choose a folder path.")
    try:  # root ignores permission bits, so only a real write tells
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise TlcliError(
            f"{name}: cannot write in {existing} ({error.strerror or error}). "
            "Choose a folder you can write to, or make this one writable."
        ) from None


def check_url_writable(path: Url) -> None:
    """Refuse, before any work, a URL this process cannot write at: an unknown scheme, a store it
    cannot reach, a bucket that does not exist or denies writing."""
    check_readable(path, "--out")
    _probe_writing(path.parent, f"--out {path}")


def _probe_writing(folder: Url, name: str) -> None:
    """Write and remove an empty file in `folder` (made if missing): only a write tells whether
    the bucket allows it."""
    probe = folder / f".tlcli-probe-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TlcliError(
            f"{name}: cannot write there ({error.strerror or error}). Check your credentials and the "
            "bucket's permissions, or choose another place."
        ) from None


def _place_key(place: Location) -> tuple[str, PurePosixPath]:
    """Where `place` is, comparable across spellings: a `file://` URL is its local path."""
    if isinstance(place, Url) and place.scheme != "file":
        return place.scheme, PurePosixPath(place.resolve().path)
    local = Path(place.path) if isinstance(place, Url) else Path(place)
    return "file", PurePosixPath(local.resolve())


def _relation(path: Location, other: Location) -> str | None:
    """"is", "lies inside" or "contains" for how `path` sits to `other`, else None."""
    (scheme, target), (other_scheme, place) = _place_key(path), _place_key(other)
    if scheme != other_scheme:
        return None
    return "is" if target == place else "lies inside" if place in target.parents \
        else "contains" if target in place.parents else None


def check_apart(path: Location, data: Location | None = None, sources: dict[Location, str] | None = None) -> None:
    """Refuse an output folder that is, holds or lies inside the dataset, or holds a file the
    command reads (`sources`: path -> what it is). Local paths and URLs compare alike."""
    relation = _relation(path, data) if data is not None else None
    if relation:
        raise TlcliError(
            f"--out {path} {relation} the dataset {data}. tlcli never writes into a dataset or "
            "replaces one: choose an --out outside it."
        )
    for source, what in (sources or {}).items():
        if _relation(path, source) in ("is", "contains"):
            raise TlcliError(f"--out {path} holds {what} ({source}). Choose another --out.")


def claim_output(path: Location, kind: str, *, overwrite: bool = False, resume: bool = False,
                 data: Location | None = None, sources: dict[Location, str] | None = None) -> None:
    """Lock the output folder `path` for this command and refuse, before anything is written, any
    use of it that could lose something: see the rules below. Call it from a function decorated
    with `locks_outputs`. Creates the parent folders (the lock lives beside `path`), nothing else.

    - never the dataset, in it or around it, nor a folder holding what the command reads;
    - never a file, a path under a file, or a place that cannot be written;
    - never a folder another process is writing (whatever the flags);
    - an existing folder must be empty, or a `kind` folder tlcli made: replaced only with
      --overwrite, continued with --resume, or started again when it never finished an epoch.

    A URL is checked by the same rules, except the lock: object storage has none (runs.remote).
    """
    path = _as_place(path)
    check_apart(path, data, sources)
    if isinstance(path, Url):
        check_url_writable(path)
    else:
        check_writable_folder(path, f"--out {path}")
        check_writable_folder(path.parent, f"--out {path}")  # the lock, and any replacement, go beside it
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_output(path, f"--out {path}", OUTPUT_KINDS[kind])
    if not _occupied(path):
        return
    found = output_kind(path)
    if found != kind:
        raise TlcliError(_not_replaceable(path, kind, found))
    if is_uploading(path):
        if overwrite:
            return
        raise TlcliError(
            f"--out {path} holds {OUTPUT_KINDS[kind]} whose upload did not finish, so there is nothing sound to "
            f"{'resume' if resume else 'keep'}. Use --overwrite to write it again, or choose another --out."
        )
    if resume or overwrite or _restartable(path, kind):
        return
    interrupted = (path / IN_PROGRESS).exists()
    state = f"holds {_INTERRUPTED[kind]}" if interrupted else "already exists"
    if interrupted or kind == "tune":  # a finished search can still grow with --resume
        remedy = "--resume to continue it, --overwrite to start over"
    else:
        remedy = "--overwrite to replace it"
    raise TlcliError(f"--out {path} {state}. Use {remedy}, or choose another --out.")


def _occupied(path: Location) -> bool:
    return _lexists(path) and not (path.is_dir() and not path.is_symlink() and not any(path.iterdir()))


def _restartable(path: Path, kind: str) -> bool:
    """Interrupted before its first epoch (or trial) ended: nothing to resume, so it starts again."""
    return (path / IN_PROGRESS).exists() and not any((path / name).exists() for name in _PROGRESS.get(kind, ()))


def _not_replaceable(path: Path, kind: str, found: str | None) -> str:
    if found is None:
        return (
            f"--out {path} already exists and holds files tlcli did not write, so tlcli neither writes into "
            "it nor replaces it, even with --overwrite. Choose a new or empty folder for --out."
        )
    return (
        f"--out {path} holds {OUTPUT_KINDS[found]}, not {OUTPUT_KINDS[kind]}, and --overwrite replaces only "
        f"{OUTPUT_KINDS[kind]}. Choose another --out, or delete {path} yourself first."
    )


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


def start_output_dir(path: Path, kind: str) -> None:
    """Make a claimed `path` a fresh, marked `kind` folder in progress (claim_output decided that
    whatever it held may go)."""
    if _occupied(path):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, kind)
    (path / IN_PROGRESS).write_text("")


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


def finish_output_dir(path: Path) -> None:
    """Mark a folder that start_output_dir made as finished."""
    (path / IN_PROGRESS).unlink(missing_ok=True)


def finish_run_dir(path: Path) -> None:
    shutil.rmtree(path / BACKUP, ignore_errors=True)
    finish_output_dir(path)


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
