"""Where tlcli may write: the one policy that every command's output goes through.

A command never opens an output path itself. It claims it here first, before any work, and the
claim refuses in one line anything that could lose what a user owns:

- nothing is written inside a dataset (DATA, a pack, a label file's folder) or over a file the
  command reads;
- nothing is written inside a folder tlcli made (a run, a search, an export, explain's pictures,
  a pack, evaluate's reports) unless it is that command's own output there;
- an existing file is replaced only with --overwrite, and only if tlcli wrote it (its signature:
  `runs.atomic.signed_by_tlcli`); a command's default output, named by tlcli, is simply refreshed;
- a folder output is new, empty, or one tlcli made of the same kind. Replacing it removes only
  the files tlcli wrote there (the marker's list) and keeps, and names, the rest;
- a format is written as the name says, or the name is refused.

How each write appears whole (temporary names, folders swapped in) is `runs.atomic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Iterator

from tlcli.errors import TlcliError
from tlcli.runs.atomic import (
    PARTIAL,
    REPLACED,
    leftovers,
    sibling,
    signed_by_tlcli,
    swap_into_place,
    tidy_leftovers,
    umask,
    write_json,
)
from tlcli.runs.locks import lock_output
from tlcli.runs.names import (
    BACKUP,
    CONFIG,
    EXPORT_METADATA,
    HISTORY,
    IN_PROGRESS,
    LABELS,
    LEADERBOARD,
    MARKER,
    TUNE_SETTINGS,
    UPLOADING,
)
from tlcli.storage import Location, Url, check_readable

OUTPUT_KINDS = {
    "run": "a training run", "tune": "a tuning search", "export": "an export", "explain": "tlcli explain's pictures",
    "pack": "a packed dataset", "evaluation": "tlcli evaluate's reports", "audit": "tlcli audit's reports",
}
FORMATS = {".png": "a PNG image", ".npz": "a NumPy .npz archive", ".csv": "a CSV file", ".html": "an HTML page"}
# What --resume continues from: an interrupted folder without any of these holds nothing to resume.
_PROGRESS = {"run": (HISTORY, BACKUP), "tune": (LEADERBOARD,)}
_INTERRUPTED = {"run": "an interrupted run", "tune": "an interrupted search"}


def _as_place(path: Location) -> Location:
    return path if isinstance(path, Url) else Path(path)


def _lexists(path: Location) -> bool:
    return path.exists() if isinstance(path, Url) else os.path.lexists(path)


# --- what a folder is -----------------------------------------------------------------------


def output_kind(path: Location) -> str | None:
    """The kind of a folder tlcli made (OUTPUT_KINDS), by its marker or by the files earlier
    versions left in it; None for any other folder, which tlcli never writes into or replaces."""
    path = _as_place(path)
    if path.is_symlink() or not path.is_dir():
        return None
    if _lexists(path / MARKER):
        kind = json_object(path / MARKER).get("kind")
        return kind if kind in OUTPUT_KINDS else None
    if json_object(path / CONFIG).get("kind") in ("train", "finetune") and (path / LABELS).is_file():
        return "run"
    if {"search", "objective", "space"} <= json_object(path / TUNE_SETTINGS).keys():
        return "tune"
    if {"files", "class_names"} <= json_object(path / EXPORT_METADATA).keys() and (path / LABELS).is_file():
        return "export"
    return None


def marker_document(kind: str, *, uploading: bool = False, files=None, kept=()) -> dict:
    """What a `.tlcli` marker holds: the folder's kind, the files tlcli wrote there once it is
    finished (`files`), and what it found there and kept (`kept`). A folder being uploaded to a
    URL (runs.staging) is marked `uploading` until its last file is there: readers refuse it,
    --overwrite may still replace it."""
    from tlcli import __version__

    document = {"kind": kind, "tlcli": __version__}
    if uploading:
        document["state"] = UPLOADING
    if files is not None:
        document["files"] = sorted(files)
    if kept:
        document["kept"] = sorted(kept)
    return document


def write_marker(folder: Path, kind: str, **contents) -> None:
    """Mark `folder` as a `kind` folder made by tlcli, so that --overwrite may replace it."""
    write_json(Path(folder) / MARKER, marker_document(kind, **contents))


def is_uploading(folder: Location) -> bool:
    """Whether `folder` is a tlcli folder whose upload to a URL has not finished (or stopped part-way)."""
    return json_object(_as_place(folder) / MARKER).get("state") == UPLOADING


def check_uploaded(folder: Location, name: Location | str) -> None:
    """Refuse, in one line, a folder whose upload has not finished: some of its files may be
    missing, or an older output's."""
    if is_uploading(folder):
        raise TlcliError(
            f"{name} is still being uploaded, or its upload stopped part-way, so it is not complete. "
            "Wait for the command writing it to finish, or write it again (with --overwrite)."
        )


def json_object(path: Location) -> dict:
    """The JSON object in `path`; {} when it is missing, unreadable or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def enclosing_output(path: Location) -> tuple[Location, str] | None:
    """The nearest folder above `path` that tlcli made, with its kind; None when there is none."""
    for folder in _as_place(path).parents if isinstance(path, Url) else Path(os.path.abspath(path)).parents:
        kind = output_kind(folder)
        if kind is not None:
            return folder, kind
    return None


# --- where a path sits ----------------------------------------------------------------------


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


def check_apart(path: Location, data: Location | tuple | None = None, sources: dict[Location, str] | None = None,
                option: str = "--out") -> None:
    """Refuse an output that is, holds or lies inside the dataset (or any of several: DATA, a
    label file's folder), or holds a file the command reads (`sources`: path -> what it is).
    Local paths and URLs compare alike."""
    for dataset in (data if isinstance(data, (tuple, list)) else (data,)):
        relation = _relation(path, dataset) if dataset is not None else None
        if relation:
            raise TlcliError(
                f"{option} {path} {relation} the dataset {dataset}. tlcli never writes into a dataset or "
                f"replaces one: choose an {option} outside it."
            )
    for source, what in (sources or {}).items():
        if _relation(path, source) in ("is", "contains"):
            raise TlcliError(f"{option} {path} holds {what} ({source}). Choose another {option}.")


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


def _check_outside_outputs(path: Location, name: str, own: dict[str, tuple[str, ...]]) -> None:
    """Refuse a path inside a folder tlcli made, unless it is one of this command's own outputs
    there (`own`: kind -> the names the command writes directly inside such a folder)."""
    found = enclosing_output(path)
    if found is None:
        return
    folder, kind = found
    parent = path.parent if isinstance(path, Url) else Path(os.path.abspath(path)).parent
    if parent == folder and any(_matches(path.name, pattern) for pattern in own.get(kind, ())):
        return
    raise TlcliError(
        f"{name} lies inside {OUTPUT_KINDS[kind]} ({folder}), whose files belong to the command that wrote them. "
        f"Choose a path outside {folder}."
    )


def _matches(name: str, pattern: str) -> bool:
    return PurePosixPath(name).match(pattern)


# --- claiming a file ------------------------------------------------------------------------


def claim_file(path: Location, *, suffix: str, overwrite: bool = False, default: bool = False,
               data: Location | None = None, sources: dict[Location, str] | None = None,
               own: dict[str, tuple[str, ...]] | None = None, option: str = "--out") -> Location:
    """Check, before any work, that this command may write its one file at `path` (see the rules
    above), and return it. `default` marks a path the command chose itself, refreshed without
    --overwrite; `own` names what the command writes inside folders of other kinds."""
    path = _as_place(path)
    name = f"{option} {path}"
    if path.is_dir():
        raise TlcliError(f"{name} is a folder, where a file is needed. Name a file, e.g. "
                         f"{_a_file_for(path, suffix, own or {}, data, sources, option)}.")
    if path.suffix.lower() != suffix:
        raise TlcliError(
            f"{name}: tlcli writes {FORMATS[suffix]} here, so the name must end in {suffix} "
            f"(for example {path.with_suffix(suffix).name})."
        )
    check_apart(path, data, sources, option)
    _check_outside_outputs(path, name, own or {})
    if isinstance(path, Url):
        check_readable(path, option)
        _probe_writing(path.parent, name)
    else:
        check_writable_folder(path.parent, name)
    if _lexists(path):
        if not signed_by_tlcli(path):
            raise TlcliError(
                f"{name} already exists and tlcli did not write it, so tlcli never replaces it, even with "
                "--overwrite. Choose another name, or move the file away first."
            )
        if not (overwrite or default):
            raise TlcliError(f"{name} already exists. Use --overwrite to replace it, or choose another name.")
    return path


def _a_file_for(folder: Location, suffix: str, own: dict[str, tuple[str, ...]], data, sources, option: str) -> Location:
    """A name to suggest for a file where `folder` was given, that these rules let the command
    write: its own name in a folder tlcli made (lr_find.png in a run), else a file in the folder,
    else one beside it."""
    patterns = own.get(output_kind(folder), ())
    candidates = [folder / pattern.replace("*", "") for pattern in patterns if pattern.endswith(suffix)]
    for candidate in [*candidates, folder / f"out{suffix}"]:
        try:
            check_apart(candidate, data, sources, option)
            _check_outside_outputs(candidate, option, own)
        except TlcliError:
            continue
        return candidate
    return folder.parent / f"{folder.name}{suffix}"


# --- claiming a folder ----------------------------------------------------------------------


def claim_output(path: Location, kind: str, *, overwrite: bool = False, resume: bool = False,
                 data: Location | None = None, sources: dict[Location, str] | None = None,
                 own: dict[str, tuple[str, ...]] | None = None) -> None:
    """Lock the output folder `path` for this command and refuse, before anything is written, any
    use of it that could lose something: see the rules below. Call it from a function decorated
    with `locks_outputs`. Creates the parent folders (the lock lives beside `path`), nothing else.

    - never the dataset, in it or around it, nor a folder holding what the command reads;
    - never inside another folder tlcli made, unless `own` names it (kind -> names);
    - never a file, a path under a file, or a place that cannot be written;
    - never a folder another process is writing (whatever the flags);
    - an existing folder must be empty, or a `kind` folder tlcli made: replaced only with
      --overwrite, continued with --resume, or started again when it never finished an epoch.

    A URL is checked by the same rules, except the lock: object storage has none (runs.staging).
    """
    path = _as_place(path)
    check_apart(path, data, sources)
    _check_outside_outputs(path, f"--out {path}", own or {})
    if isinstance(path, Url):
        check_readable(path, "--out")
        _probe_writing(path.parent, f"--out {path}")
    else:
        check_writable_folder(path, f"--out {path}")
        check_writable_folder(path.parent, f"--out {path}")  # the lock, and any replacement, go beside it
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_output(path, f"--out {path}", OUTPUT_KINDS[kind])
        tidy_leftovers(path)
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


# --- a folder's life: started, written, finished --------------------------------------------


def user_files(folder: Path) -> list[str]:
    """What a folder tlcli made holds that tlcli did not write: relative paths, folders ending in
    "/", the outermost only. A finished folder's marker lists what tlcli wrote; an unfinished
    one's, what was kept when it started; a folder from before markers listed anything is all tlcli's."""
    marker = json_object(folder / MARKER)
    if "files" in marker:
        return _foreign(folder, folder, set(marker["files"]) | {MARKER, IN_PROGRESS})
    return [name for name in marker.get("kept", ()) if _lexists(folder / name.rstrip("/"))]


def _foreign(root: Path, folder: Path, ours: set[str]) -> list[str]:
    found = []
    for path in sorted(folder.iterdir()):
        name = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            prefix = name + "/"
            if prefix in ours or any(entry.startswith(prefix) for entry in ours):
                found += _foreign(root, path, ours)
            else:
                found.append(prefix)
        elif name not in ours:
            found.append(name)
    return found


def _written(root: Path, kept: list[str]) -> list[str]:
    """Every file and folder below `root` (folders ending in "/") but the marker and what was kept."""
    names = []
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix() + ("/" if path.is_dir() and not path.is_symlink() else "")
        if name not in (MARKER, IN_PROGRESS) and not any(name == keep or name.startswith(keep) for keep in kept
                                                         if keep == name or keep.endswith("/")):
            names.append(name)
    return names


def clear_for_writing(folder: Path) -> list[str]:
    """Remove what tlcli wrote in a claimed `folder` and keep the rest; the kept names."""
    kept = user_files(folder)
    _remove_except(folder, folder, set(kept))
    return kept


def _remove_except(root: Path, folder: Path, kept: set[str]) -> None:
    for path in folder.iterdir():
        name = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            prefix = name + "/"
            if prefix in kept:
                continue
            if any(keep.startswith(prefix) for keep in kept):
                _remove_except(root, path, kept)
            else:
                shutil.rmtree(path)
        elif name not in kept:
            path.unlink()


def start_output_dir(path: Path, kind: str) -> list[str]:
    """Make a claimed `path` a marked `kind` folder in progress, keeping the files tlcli did not
    write; the kept names. A finished output there (a run or search being replaced) is set aside
    whole until this one finishes, so a kill in between loses neither; an unfinished one is removed."""
    if _finished(path):
        kept = _set_aside(path)
    else:
        kept = clear_for_writing(path) if _occupied(path) else []
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, kind, kept=kept)
    (path / IN_PROGRESS).write_text("")
    return kept


def _finished(path: Path) -> bool:
    return (path / MARKER).is_file() and not (path / IN_PROGRESS).exists() and "files" in json_object(path / MARKER)


def _set_aside(path: Path) -> list[str]:
    """Rename the finished folder `path` to a REPLACED sibling and bring the user's files back."""
    kept = user_files(path)
    aside = sibling(path, REPLACED)
    os.rename(path, aside)
    path.mkdir()
    _move_back(aside, path, kept)
    return kept


def _move_back(aside: Path, path: Path, names) -> None:
    for name in names:
        source, destination = aside / name.rstrip("/"), path / name.rstrip("/")
        if os.path.lexists(source) and not os.path.lexists(destination):
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, destination)


def abandon_unstarted(path: Location) -> None:
    """Take away a run or search that failed before it saved any progress, leaving its place as
    the command found it: a finished one it set aside back in place, a user's files kept."""
    if isinstance(path, Url) or not (path / IN_PROGRESS).exists() or _has_progress(path):
        return
    kept, aside = user_files(path), leftovers(path, REPLACED)
    if aside:
        _move_back(path, aside[-1], kept)
        shutil.rmtree(path)
        os.rename(aside[-1], path)
    elif kept:
        _remove_except(path, path, set(kept))
    else:
        shutil.rmtree(path)


def _has_progress(path: Path) -> bool:
    kind = json_object(path / MARKER).get("kind") if (path / MARKER).is_file() else None
    return any((path / name).exists() for name in _PROGRESS.get(kind, (HISTORY, BACKUP, LEADERBOARD)))


def replaced_note(path: Location) -> str | None:
    """Where the finished output that an unfinished `path` replaces is kept, if anywhere."""
    if isinstance(path, Url) or not (aside := leftovers(Path(path), REPLACED)):
        return None
    return f"the finished one it replaces is kept in {aside[-1]} until it finishes"


def finish_output_dir(path: Path) -> None:
    """Mark a folder that start_output_dir made as finished (its marker lists the files tlcli
    wrote), then remove what it replaced, bringing back any file of a user's left there."""
    marker = json_object(path / MARKER)
    kept = marker.get("kept", [])
    write_marker(path, marker.get("kind", "run"), files=_written(path, kept), kept=kept)
    (path / IN_PROGRESS).unlink(missing_ok=True)
    for aside in leftovers(path, REPLACED):
        _move_back(aside, path, user_files(aside))
        shutil.rmtree(aside, ignore_errors=True)


def record_files(folder: Location, names) -> None:
    """Add the files a command wrote as its own output into a finished folder tlcli made (a plot
    or reports in a run) to the folder's marker, so that they count as tlcli's later."""
    folder = _as_place(folder)
    marker = json_object(folder / MARKER)
    if "files" in marker and not isinstance(folder, Url):  # (a URL's marker is written when it is published)
        write_marker(folder, marker["kind"], files=set(marker["files"]) | set(names), kept=marker.get("kept", ()))


def finish_run_dir(path: Path) -> None:
    shutil.rmtree(path / BACKUP, ignore_errors=True)
    finish_output_dir(path)


@contextlib.contextmanager
def building(target: Path, kind: str) -> Iterator[Path]:
    """A fresh folder beside the claimed `target` to write a whole `kind` output into. When the
    block ends without error it replaces `target` in one step, with the files tlcli did not write
    in the old `target` carried across; an error or a kill leaves `target` as it was (and the next
    claim of `target` removes the half-built folder)."""
    built = sibling(target, PARTIAL)
    try:
        start_output_dir(built, kind)
        built.chmod(0o777 & ~umask())  # as any folder tlcli makes: a model server may run as another user
        yield built
        kept = user_files(target) if _occupied(target) else []
        write_marker(built, kind, kept=kept)
        for name in kept:
            _link_or_copy(target / name.rstrip("/"), built / name.rstrip("/"))
        finish_output_dir(built)
        swap_into_place(built, target)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise


def _link_or_copy(source: Path, destination: Path) -> None:
    """A user's file or folder carried into a new output: hard links where the file system allows."""
    destination.parent.mkdir(parents=True, exist_ok=True)

    def link(from_path, to_path):
        try:
            os.link(from_path, to_path, follow_symlinks=False)
        except OSError:
            shutil.copy2(from_path, to_path, follow_symlinks=False)

    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True, copy_function=link)
    else:
        link(source, destination)


def kept_note(folder: Location) -> str | None:
    """"kept notes.txt, keep/ in OUT: tlcli did not write them" for a folder whose marker lists
    files tlcli found there and kept; None when it kept nothing."""
    kept = json_object(_as_place(folder) / MARKER).get("kept") or []
    if not kept:
        return None
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return f"kept {shown} in {folder}: tlcli did not write them"
