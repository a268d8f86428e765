"""Outputs at a URL: written locally, then published so that nothing is half-written.

Object storage has no atomic rename and no locks, so a command whose --out is a URL

1. claims it first, by the rules of a local folder (`claim_output`), before any work;
2. writes everything into a local staging folder, exactly as it writes a local --out;
3. publishes the staging folder: the URL's `.tlcli` marker first says that an upload is in
   progress, then every file is uploaded, files of the old output the new one lacks are removed,
   and the final marker is written last. Readers refuse a folder whose marker says it is being
   uploaded (`check_uploaded`); --overwrite may still replace it.

Ctrl-C during training (`Interrupted`) publishes the interrupted run, so that --resume can
continue from the URL (it downloads the run into the staging folder first). Any other error
publishes nothing: the old output stays as it was. Two commands writing one URL at once are the
user's to avoid.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tlcli.errors import TlcliError
from tlcli.runs.directory import Interrupted
from tlcli.runs.names import MARKER
from tlcli.runs.outputs import claim_output, json_object, marker_document
from tlcli.storage import (
    Location,
    Url,
    atomic_url_file,
    copy_file,
    download_folder,
    forget_fetched,
    is_url,
    location,
    remove_tree,
)


@dataclass(frozen=True)
class StagedOutput:
    """Where the user asked for the output (`target`) and where the command writes it (`local`):
    the same local path, or a staging folder for a URL."""

    target: Location | None
    local: Path | None

    def public(self, path: Path) -> Location:
        """What `path`, written below `local`, is called once published."""
        if isinstance(self.target, Url) and self.local is not None:
            with contextlib.suppress(ValueError):
                relative = Path(path).relative_to(self.local)
                return self.target if str(relative) == "." else self.target / relative.as_posix()
        return path


def url_sources(value, what: str) -> dict:
    """{URL: what} for an input given as a URL, which a URL --out must keep apart from; else {}."""
    return {location(value): what} if is_url(value) else {}


@contextlib.contextmanager
def staged_output(target: Location | None, kind: str, *, overwrite: bool = False, resume: bool = False,
                  data: Location | tuple | None = None, sources: dict[Location, str] | None = None,
                  own: dict[str, tuple[str, ...]] | None = None, last: tuple[str, ...] = ()) -> Iterator[StagedOutput]:
    """The folder a command writes its `kind` output into: `target` itself when it is local (or
    None, for the command's default), else a claimed URL's staging folder, published when the block
    ends without error or with `Interrupted`. `last` names files uploaded just before the marker."""
    if not isinstance(target, Url):
        yield StagedOutput(target, None if target is None else Path(target))
        return
    claim_output(target, kind, overwrite=overwrite, resume=resume, data=data, sources=sources, own=own)
    with tempfile.TemporaryDirectory(prefix="tlcli-staging-") as scratch:
        local = Path(scratch) / (target.name or "out")
        if resume and target.is_dir():
            download_folder(target, local)
        staged = StagedOutput(target, local)
        try:
            yield staged
        except Interrupted as error:
            if local.is_dir():
                publish(local, target, kind, last)
            raise _retarget(error, local, target) from None
        except TlcliError as error:
            raise _retarget(error, local, target) from None
        if local.is_dir():  # a worker that is not the chief leaves none: only the chief publishes
            publish(local, target, kind, last)


def _retarget(error: TlcliError, local: Path, target: Url) -> TlcliError:
    """The same error, naming the URL where it named the staging folder or file."""
    error.args = (str(error).replace(str(local), str(target)),)
    return error


def publish(local: Path, target: Url, kind: str, last: tuple[str, ...] = ()) -> None:
    """Make the URL `target` hold what the local folder `local` holds (see the module's steps)."""
    marker = target / MARKER
    files = sorted(name for name in (path.relative_to(local).as_posix() for path in local.rglob("*") if path.is_file())
                   if name != MARKER)
    files = [name for name in files if name not in last] + [name for name in last if name in files]
    final_marker = (local / MARKER).read_bytes() if (local / MARKER).is_file() else \
        (json.dumps(marker_document(kind, files=files), indent=2) + "\n").encode()
    earlier = json_object(marker)  # what an earlier output's marker says tlcli wrote there
    forget_fetched(target)
    try:
        target.mkdir(parents=True, exist_ok=True)
        _replace(marker, (json.dumps(marker_document(kind, uploading=True), indent=2) + "\n").encode())
        for name in files:
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.unlink(missing_ok=True)  # ram:// appends to a file written again
            copy_file(local / name, destination)
        _remove_earlier(target, set(files) | {MARKER}, earlier.get("files") if "files" in earlier else None)
        _replace(marker, final_marker)
    except OSError as error:  # the store refused a write or went away part-way
        raise TlcliError(
            f"--out {target}: the upload stopped part-way ({error.strerror or error}), so {target} is marked "
            "unfinished and every command refuses it. Run the command again with --overwrite."
        ) from None


def _replace(url: Url, content: bytes) -> None:
    url.unlink(missing_ok=True)  # ram:// appends to a file written again
    url.write_bytes(content)


def _remove_earlier(target: Url, keep: set[str], earlier: list[str] | None) -> None:
    """Remove the files an earlier output left below `target` that are not in `keep`: those its
    marker lists as tlcli's (`earlier`; every file when it lists none), then the folders that
    leaves empty. A user's file beside them stays."""
    folders = []
    for item in list(target.rglob()):
        name = item.relative_to(target).as_posix()
        if item.is_dir():
            folders.append(item)
        elif name not in keep and (earlier is None or name in earlier):
            item.unlink(missing_ok=True)
    for folder in sorted(folders, key=lambda url: len(url.path), reverse=True):
        if not any(True for _ in folder.iterdir()):
            remove_tree(folder)


@contextlib.contextmanager
def staged_file(target: Location) -> Iterator[Path]:
    """A local path to write one file to: `target` itself when local, else a temporary file that
    is uploaded to the URL (under a temporary name, then renamed) when the block ends without error."""
    if not isinstance(target, Url):
        yield Path(target)
        return
    with tempfile.TemporaryDirectory(prefix="tlcli-staging-") as scratch:
        local = Path(scratch) / target.name
        try:
            yield local
        except TlcliError as error:
            raise _retarget(error, local, target) from None
        try:
            with atomic_url_file(target) as handle, open(local, "rb") as source:
                while chunk := source.read(1 << 24):
                    handle.write(chunk)
        except OSError as error:  # the store refused the write or went away: the old file, if any, stays
            raise TlcliError(f"--out {target}: the upload failed ({error.strerror or error}). "
                             "Run the command again.") from None
