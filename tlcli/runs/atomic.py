"""How an output appears whole: files written under a temporary name and renamed, folders built
beside their place and swapped in, and tlcli's signature in the single files it writes.

A kill at any moment leaves the old file or folder or the new one, never neither and never half
of one. The single files tlcli writes carry its signature (a PNG's Software text, an .npz's
comment, a CSV's last column, an HTML page's second line), so that --overwrite replaces only
tlcli's own. The policy of where tlcli may write at all is `runs.outputs`.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Sequence

from tlcli.storage import Location, Url, atomic_url_file


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
    """Write a file so that a killed process leaves either the old file or the new one. A PNG
    image gets tlcli's signature (`sign_png`), so that --overwrite may replace it later."""
    if isinstance(content, bytes) and content.startswith(_PNG_HEADER):
        content = sign_png(content)
    with atomic_file(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def write_json(path: Location, document) -> None:
    write_atomic(path, json.dumps(document, indent=2, default=str) + "\n")


def save_model_atomic(model, path: Path) -> None:
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(temporary)
    os.replace(temporary, path)


def _read_umask() -> int:
    current = os.umask(0)  # reading it means setting it, so it is set back at once
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once, at import: read again while a checkpoint thread writes, it would race


def umask() -> int:
    """The process's umask, as it was when tlcli was imported."""
    return _UMASK


# --- tlcli's signature in the single files it writes -------------------------------------------

SIGNATURE_PREFIX = "tlcli"
_PNG_HEADER = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_HEADER) + 8 + 13 + 4  # length, type, the 13 bytes of IHDR, its CRC


def signature() -> str:
    from tlcli import __version__

    return f"{SIGNATURE_PREFIX} {__version__}"


def sign_png(content: bytes) -> bytes:
    """The PNG `content` with a tEXt chunk "Software: tlcli VERSION" right after its header, which
    is how tlcli tells, later, that it wrote the file (and may replace it with --overwrite)."""
    if not content.startswith(_PNG_HEADER) or content[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    text = b"Software\x00" + signature().encode()
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return content[:_IHDR_END] + chunk + content[_IHDR_END:]


def npz_comment() -> bytes:
    """The archive comment tlcli gives the .npz files it writes (numpy ignores it)."""
    return signature().encode()


_CSV_SIGNATURE = re.compile(r"^" + SIGNATURE_PREFIX + r" \S+ sha256=([0-9a-f]{64})$")


def signed_csv(fields: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A CSV document of `rows` under the header `fields`, with one more column, empty in every
    row, whose name is tlcli's signature and the sha256 of the rows: "tlcli VERSION sha256=HEX".

    A CSV has no place for metadata that every reader skips, and a comment line would be read as
    the header; an extra column is ignored by tlcli's label reader, pandas and spreadsheets alike.
    The digest makes a copy that someone edited (re-saved by a spreadsheet, say) no longer
    tlcli's, so that --overwrite never replaces a user's corrections.
    """
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    for row in rows:
        writer.writerow([*row, ""])
    text = body.getvalue()
    header = io.StringIO()
    digest = hashlib.sha256(text.encode()).hexdigest()
    csv.writer(header, lineterminator="\n").writerow([*fields, f"{signature()} sha256={digest}"])
    return header.getvalue() + text


def _csv_signed(handle, head: bytes) -> bool:
    """Whether the CSV whose first bytes are `head` ends its header with tlcli's signature and its
    rows are still those the signature's digest was made of."""
    line, newline, _ = head.partition(b"\n")
    found = _CSV_SIGNATURE.match(line.decode("utf-8", errors="replace").rsplit(",", 1)[-1])
    return bool(newline) and found is not None and _digest_from(handle, len(line) + 1) == found.group(1)


def _digest_from(handle, offset: int) -> str:
    """The sha256 of the file's bytes from `offset` to its end: what a signature's digest covers."""
    handle.seek(offset)
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(2**20), b""):
        digest.update(chunk)
    return digest.hexdigest()


_HTML_DOCTYPE = "<!DOCTYPE html>\n"
_HTML_SIGNATURE = re.compile(r"^<!-- " + SIGNATURE_PREFIX + r" \S+ sha256=([0-9a-f]{64}) -->$")


def signed_html(page: str) -> str:
    """The HTML document `page` (which starts with its doctype line) with a comment as its second
    line holding tlcli's signature and the sha256 of the rest: "<!-- tlcli VERSION sha256=HEX -->".
    As with a CSV, a page someone edited is no longer tlcli's, so --overwrite keeps their edits."""
    if not page.startswith(_HTML_DOCTYPE):
        raise ValueError("not an HTML document that starts with <!DOCTYPE html>")
    body = page[len(_HTML_DOCTYPE):]
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{_HTML_DOCTYPE}<!-- {signature()} sha256={digest} -->\n{body}"


def _html_signed(handle, head: bytes) -> bool:
    """Whether the page whose first bytes are `head` has tlcli's signature as its second line, and
    the rest is still what the signature's digest was made of."""
    doctype, _, rest = head.partition(b"\n")
    line, newline, _ = rest.partition(b"\n")
    found = _HTML_SIGNATURE.match(line.decode("utf-8", errors="replace"))
    return (bool(newline) and found is not None
            and _digest_from(handle, len(doctype) + len(line) + 2) == found.group(1))


def signed_by_tlcli(path: Location) -> bool:
    """Whether the file at `path` carries tlcli's signature: a PNG's Software text, an .npz's
    archive comment, a CSV's signature column or an HTML page's signature line whose digest still
    matches the rest. Any other file, or one that cannot be read, is not tlcli's."""
    try:
        with Path(path).open("rb") if not isinstance(path, Url) else path.open("rb") as handle:
            head = handle.read(4096)
            if head.startswith(_PNG_HEADER):
                return _png_software(head).startswith(SIGNATURE_PREFIX)
            if head.startswith(b"PK"):
                handle.seek(0)
                with zipfile.ZipFile(handle) as archive:
                    return archive.comment.decode(errors="replace").startswith(SIGNATURE_PREFIX)
            if head.startswith(_HTML_DOCTYPE.encode()):
                return _html_signed(handle, head)
            return _csv_signed(handle, head)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def _png_software(head: bytes) -> str:
    """The Software text of the PNG whose first bytes are `head`, if it comes before any image data."""
    offset = len(_PNG_HEADER)
    while offset + 8 <= len(head):
        length, kind = struct.unpack(">I4s", head[offset:offset + 8])
        if kind == b"IDAT":
            break
        if kind == b"tEXt":
            key, _, value = head[offset + 8:offset + 8 + length].partition(b"\x00")
            if key == b"Software":
                return value.decode("latin-1")
        offset += 12 + length
    return ""


# --- folders built beside their place and swapped in ------------------------------------------

PARTIAL = "partial"  # a folder being built: `.NAME.partial-ID`, beside NAME
OLD = "old"  # an old folder on its way out: `.NAME.old-ID`
REPLACED = "replaced"  # a finished run or search kept until the one replacing it finishes: `.NAME.replaced-ID`


def sibling(target: Path, role: str) -> Path:
    """A new hidden name beside `target` for a folder in the `role` PARTIAL, OLD or REPLACED."""
    return target.parent / f".{target.name}.{role}-{uuid.uuid4().hex[:8]}"


def leftovers(target: Path, role: str) -> list[Path]:
    """The folders a killed command left beside `target` in `role`."""
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{target.name}.{role}-*"))


def tidy_leftovers(target: Path) -> None:
    """Clean up after a command killed while it built or swapped in `target` (the caller holds
    `target`'s lock, so none is running): an old folder whose successor never arrived goes back
    in place, and every half-built folder goes."""
    old = leftovers(target, OLD)
    if old and not os.path.lexists(target):
        os.rename(old.pop(), target)
    for folder in old + leftovers(target, PARTIAL):
        shutil.rmtree(folder, ignore_errors=True)


def swap_into_place(built: Path, target: Path) -> None:
    """Put the finished folder `built` at `target`, atomically replacing any folder there (whose
    content is then removed). On Linux the two trade places in one step (renameat2); elsewhere the
    old folder is renamed aside first, and `tidy_leftovers` puts it back if a kill comes between."""
    if not os.path.lexists(target):
        os.rename(built, target)
        return
    if _exchange(built, target):
        shutil.rmtree(built, ignore_errors=True)  # `built` now names the old folder
        return
    old = sibling(target, OLD)
    os.rename(target, old)
    os.rename(built, target)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where it is missing."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0
