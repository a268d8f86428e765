"""Where tlcli reads and writes: local paths, or URLs through TensorFlow's file systems.

A URL (`gs://bucket/data`, `file:///srv/data`, `ram://...`, or any scheme `tf.io.gfile` has a file
system for) becomes a `Url`: the part of `pathlib.Path`'s interface that tlcli uses, carried out by
`tf.io.gfile`. Code written for folders then reads a bucket unchanged, and a local path stays a
`pathlib.Path`, handled exactly as before. `file://` URLs go the URL way on purpose: with them, and
with TensorFlow's in-memory `ram://` file system, the code that serves `gs://` runs without a network.

Object storage has no atomic rename (TensorFlow's Cloud Storage rename copies, then deletes), so a
file is written under a temporary name and renamed (`atomic_url_file`), and a folder is written
whole with a completion marker written last (see `tlcli.runs.staging`).

TensorFlow is imported only when a URL is used.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Union

from tlcli.errors import TlcliError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(value) -> bool:
    return isinstance(value, Url) or (isinstance(value, str) and _SCHEME.match(value) is not None)


def _gfile():
    from tlcli.runtime import import_tensorflow

    return import_tensorflow().io.gfile


def _errors():
    from tlcli.runtime import import_tensorflow

    return import_tensorflow().errors


class UrlStat(NamedTuple):
    st_size: int
    st_mtime_ns: int  # 0 where the file system keeps no time (ram://)


class Url:
    """A file or folder named by a URL, read and written through `tf.io.gfile`:
    `Url("gs://bucket/data")`, or `Url("gs", "bucket/data")` (its scheme and path)."""

    __slots__ = ("scheme", "path")

    def __init__(self, value: str, path: str | None = None):
        if path is None:
            match = _SCHEME.match(value)
            if match is None:
                raise ValueError(f"{value!r} is not a URL")
            value, path = match.group(1).lower(), value[match.end():]
        self.scheme = value
        self.path = path.rstrip("/") if path.strip("/") else path  # "gs://b/x/" names gs://b/x

    # What pathlib.PurePath has.
    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"Url({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Url) and (self.scheme, self.path) == (other.scheme, other.path)

    def __lt__(self, other: "Url") -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __truediv__(self, name) -> "Url":
        return Url(self.scheme, posixpath.join(self.path, str(name)) if self.path else str(name))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> "Url":
        parent = posixpath.dirname(self.path)
        return self if parent in ("", self.path) else Url(self.scheme, parent)

    @property
    def parents(self) -> list["Url"]:
        found, current = [], self
        while current.parent != current:
            current = current.parent
            found.append(current)
        return found

    def relative_to(self, other: "Url") -> PurePosixPath:
        if not isinstance(other, Url) or other.scheme != self.scheme or \
                not (self.path + "/").startswith(other.path.rstrip("/") + "/"):
            raise ValueError(f"{self} is not below {other}")
        return PurePosixPath(self.path[len(other.path.rstrip("/")):].lstrip("/") or ".")

    def with_name(self, name: str) -> "Url":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "Url":
        return self.with_name(self.stem + suffix)

    def as_posix(self) -> str:
        return str(self)

    def expanduser(self) -> "Url":
        return self

    def resolve(self) -> "Url":
        return Url(self.scheme, posixpath.normpath(self.path)) if self.path else self

    # What pathlib.Path has, through tf.io.gfile.
    def exists(self) -> bool:
        with gfile_errors(self):
            return _gfile().exists(str(self))

    def is_dir(self) -> bool:
        with gfile_errors(self):
            return _gfile().isdir(str(self))

    def is_file(self) -> bool:
        try:  # one request: in object storage every test is a round trip
            with gfile_errors(self):
                return not _gfile().stat(str(self)).is_directory
        except FileNotFoundError:
            return False

    def is_symlink(self) -> bool:
        return False  # object storage has no links

    def iterdir(self):
        with gfile_errors(self):
            names = _gfile().listdir(str(self))
        return iter(self / name.rstrip("/") for name in names)

    def stat(self) -> UrlStat:
        with gfile_errors(self):
            status = _gfile().stat(str(self))
        return UrlStat(int(status.length), int(status.mtime_nsec))

    def open(self, mode: str = "r", encoding: str | None = None):
        if "b" not in mode and encoding not in (None, "utf-8"):
            raise ValueError("Url.open reads and writes UTF-8 text only")
        return _gfile().GFile(str(self), mode)

    def read_bytes(self) -> bytes:
        with gfile_errors(self), self.open("rb") as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, content: bytes) -> None:
        with gfile_errors(self), self.open("wb") as handle:
            handle.write(content)

    def write_text(self, content: str, encoding: str = "utf-8") -> None:
        self.write_bytes(content.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        with gfile_errors(self):
            if self.exists() and not exist_ok:
                raise FileExistsError(str(self))
            (_gfile().makedirs if parents else _gfile().mkdir)(str(self))

    def unlink(self, missing_ok: bool = False) -> None:
        with gfile_errors(self):
            if missing_ok and not self.exists():
                return
            _gfile().remove(str(self))

    def rglob(self, pattern: str = "*"):
        """Every file and folder below this one (only the pattern "*" is understood)."""
        if pattern != "*":
            raise ValueError("Url.rglob understands only '*'")
        with gfile_errors(self):
            for folder, subfolders, files in _gfile().walk(str(self)):
                for name in [*subfolders, *files]:
                    yield Url(posixpath.join(folder, name.rstrip("/")))


Location = Union[Path, Url]


def location(value: str | os.PathLike | Url) -> Location:
    """A local path (with ~ expanded) or a Url, from what the user typed."""
    if isinstance(value, Url):
        return value
    if isinstance(value, str) and is_url(value):
        return Url(value)
    return Path(value).expanduser()


def glob_urls(pattern: Url) -> list[Url]:
    """The files and folders a URL pattern names, sorted (`*` matches within one folder: object
    storage has no `**`)."""
    with gfile_errors(pattern):
        return [Url(match) for match in sorted(_gfile().glob(str(pattern)))]


def relative_name(root: Location, path: Location) -> str:
    """`path` relative to the folder `root`, in `/` form; the whole path (absolute, or the URL) when
    it lies outside `root`, as a label file's rows may."""
    if isinstance(root, Url):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return str(path)
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return os.path.abspath(path) if relative.startswith(os.pardir) else Path(relative).as_posix()


def _first_line(error) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


# Cloud Storage's rule for bucket names: 3 to 63 lowercase letters, digits, -, _ and ., starting
# and ending with a letter or digit. TensorFlow retries a request to a name outside it for minutes.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def check_bucket(url, what: str | None = None) -> None:
    """Refuse at once, in one line, a gs:// URL without a valid bucket name."""
    text = str(url)
    if not text.lower().startswith("gs://"):
        return
    bucket = text[len("gs://"):].split("/", 1)[0]
    if not _BUCKET.match(bucket):
        name = f"{what} {text}" if what else text
        shown = f"{bucket!r} is not a valid bucket name" if bucket else "names no bucket"
        raise TlcliError(f"{name}: {shown}. A gs:// URL is gs://BUCKET/PATH, the bucket 3 to 63 lowercase letters, "
                         "digits, dashes, underscores or dots.")


@contextlib.contextmanager
def gfile_errors(url, what: str | None = None):
    """Turn TensorFlow's file-system errors about `url` into one line that says what to do.

    A missing file stays `FileNotFoundError` and a denied one `PermissionError`, as local paths
    raise them, so that callers handle both the same way; a scheme TensorFlow does not know and a
    store it cannot reach are a `TlcliError`.
    """
    check_bucket(url, what)
    errors = _errors()
    name = f"{what} {url}" if what else str(url)
    try:
        yield
    except errors.UnimplementedError:
        scheme = str(url).split("://", 1)[0]
        raise TlcliError(
            f"{name}: TensorFlow has no file system for {scheme}:// URLs. Use a local path, or a URL it "
            "reads (gs://, file://; other schemes need their TensorFlow plug-in installed)."
        ) from None
    except errors.NotFoundError as error:
        raise FileNotFoundError(2, _first_line(error), str(url)) from None
    except errors.PermissionDeniedError as error:
        raise PermissionError(13, _first_line(error), str(url)) from None
    except (errors.FailedPreconditionError, errors.UnauthenticatedError, errors.UnavailableError,
            errors.DeadlineExceededError, errors.AbortedError, errors.InternalError) as error:
        raise TlcliError(
            f"{name} cannot be reached ({_first_line(error)}). Check the URL, the network and your "
            "credentials (for gs://: gcloud auth application-default login)."
        ) from None


def check_readable(place: Location, what: str) -> None:
    """Refuse, in one line, a URL whose scheme TensorFlow does not know, whose store cannot be
    reached or whose bucket denies access. A missing path, or bucket, is the caller's to explain
    (`gfile.exists` answers False for both)."""
    if not isinstance(place, Url):
        return
    try:
        with gfile_errors(place, what):
            _gfile().exists(str(place))
    except PermissionError as error:
        raise TlcliError(f"{what} {place}: access denied ({error.strerror}). Check your credentials "
                         "and the bucket's permissions.") from None


@contextlib.contextmanager
def atomic_url_file(url: Url, mode: str = "wb"):
    """A handle whose content appears at `url` only when the block ends without error: it is
    written under a hidden temporary name beside `url`, then renamed (copied and deleted, on object
    storage), so a reader never sees half a file."""
    temporary = url.with_name(f".{url.name}.{uuid.uuid4().hex[:8]}.partial")
    gfile = _gfile()
    with gfile_errors(url):
        gfile.makedirs(str(url.parent))
        try:
            with gfile.GFile(str(temporary), mode) as handle:
                yield handle
            gfile.rename(str(temporary), str(url), overwrite=True)
        except BaseException:
            with contextlib.suppress(Exception):
                gfile.remove(str(temporary))
            raise


def copy_file(source: Location, target: Location) -> None:
    """Copy one file between any two locations (local or URL)."""
    if not isinstance(source, Url) and not isinstance(target, Url):
        shutil.copyfile(source, target)
        return
    with gfile_errors(source if isinstance(source, Url) else target):
        _gfile().copy(str(source), str(target), overwrite=True)


def file_sha256(path: str | os.PathLike | Url) -> str:
    """The sha256 of a file, local or at a URL (read through TensorFlow's file systems)."""
    digest = hashlib.sha256()
    with location(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_folder(url: Url, target: Path) -> None:
    """Copy every file below `url` into the local folder `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for item in url.rglob():
        local = target / item.relative_to(url)
        if item.is_dir():
            local.mkdir(parents=True, exist_ok=True)
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            copy_file(item, local)


_fetched: dict[tuple[Url, tuple[str, ...] | None], Path] = {}


def fetch(place: Location, what: str, names: tuple[str, ...] | None = None) -> Path:
    """A local path holding what `place` holds, for reading: `place` itself when local; for a URL,
    a copy made once per process (of a folder's files `names` only, when given; those missing are
    skipped) and removed when the process ends. `what` names `place` in errors."""
    if not isinstance(place, Url):
        return place
    key = (place, names)
    if key in _fetched and _fetched[key].exists():
        return _fetched[key]
    check_readable(place, what)
    if not place.exists():
        raise TlcliError(f"{what} {place} does not exist. Check the URL.")
    scratch = Path(tempfile.mkdtemp(prefix="tlcli-fetch-"))
    atexit.register(shutil.rmtree, scratch, True)
    target = scratch / (place.name or "download")
    if not place.is_dir():
        copy_file(place, target)
    elif names is None:
        download_folder(place, target)
    else:
        target.mkdir()
        for name in names:
            if (place / name).is_file():
                copy_file(place / name, target / name)
    _fetched[key] = target
    return target


def remove_tree(place: Location) -> None:
    """Remove a folder and everything below it, local or at a URL."""
    if not isinstance(place, Url):
        shutil.rmtree(place)
        return
    with gfile_errors(place):
        _gfile().rmtree(str(place))


def forget_fetched(place: Url) -> None:
    """Let `fetch` copy anew what lies at or below `place`, which this process has just rewritten."""
    for key in [key for key in _fetched if key[0] == place or place in key[0].parents]:
        del _fetched[key]
