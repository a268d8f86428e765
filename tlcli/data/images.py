"""Checking single image files before any of them reaches a training loop.

Every file is opened and fully decoded once with Pillow, so that corrupt, truncated, empty and
non-image files are found up front and reported by path, instead of surfacing as a graph error
halfway through an epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tlcli.storage import Url, is_url

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# The formats TensorFlow's decoders read, as Pillow names them.
SUPPORTED_FORMATS = {"JPEG", "PNG", "BMP", "GIF", "WEBP", "MPO"}
_EXTENSION_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP",
}
# TensorFlow reads palette and 1-bit BMPs as if they were grey levels; Pillow decodes those.
_PIL_ONLY_BMP_MODES = {"P", "1", "L"}
# Pillow warns about images above HUGE_PIXELS and refuses those above twice as many, its guard
# against decompression bombs (small files that decode to gigabytes). tlcli applies the same
# limits itself, from the header and before decoding, so that it names the file and its size
# where Pillow would print a raw DecompressionBombWarning or raise.
HUGE_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: 256 MiB of 24-bit pixels
MAX_PIXELS = 2 * HUGE_PIXELS
# Huge images that cannot be decoded at a reduced size (all but JPEG) are checked one at a time,
# so that parallel checks hold at most one of them in memory.
_ONE_HUGE_IMAGE = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mode: str
    width: int
    height: int
    digest: str  # a hash of the file's bytes, to find exact duplicates
    needs_pil: bool = False
    note: str | None = None  # kept, but worth telling (e.g. PNG data in a .jpg file)

    @property
    def huge(self) -> bool:
        return self.width * self.height > HUGE_PIXELS


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _pillow():
    """Pillow's Image module, with its size check left to tlcli (see HUGE_PIXELS)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def _too_large(width: int, height: int) -> str:
    return (
        f"too large to decode safely: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
        f"above the {MAX_PIXELS / 1e6:.0f}-megapixel limit against decompression bombs; shrink it or remove it"
    )


def check_image(path: Path) -> ImageInfo | Problem:
    """Open and decode one file; say what it is, or why it cannot be used."""
    if not is_image_name(path):
        return Problem(
            path,
            f"not an image file type ({path.suffix or 'no extension'}); "
            f"accepted: {', '.join(ext[1:] for ext in IMAGE_EXTENSIONS)}",
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        return Problem(path, f"cannot be read: {error.strerror or error}")
    if not data:
        return Problem(path, "empty file (0 bytes)")

    from PIL import UnidentifiedImageError

    try:
        with _pillow().open(io.BytesIO(data)) as image:
            image_format, mode, (width, height) = image.format, image.mode, image.size
            if image_format not in SUPPORTED_FORMATS:
                return Problem(path, f"{image_format} images are not supported")
            if width * height > MAX_PIXELS:
                return Problem(path, _too_large(width, height))
            if image_format in ("JPEG", "MPO"):
                # Decoding at 1/8 scale still reads every byte of the stream, so truncation
                # is found, at a fraction of the cost.
                image.draft("RGB", (1, 1))
            decoded_pixels = image.width * image.height  # after draft(), the reduced size
            with _ONE_HUGE_IMAGE if decoded_pixels > HUGE_PIXELS else contextlib.nullcontext():
                image.load()
    except UnidentifiedImageError:
        return Problem(path, "not a readable image (unknown or corrupt data)")
    except Exception as error:  # Pillow raises many types for damaged data
        return Problem(path, f"corrupt or truncated: {error}")

    image_format = "JPEG" if image_format == "MPO" else image_format
    expected = _EXTENSION_FORMATS[path.suffix.lower()]
    note = None if expected == image_format else f"{image_format} data in a {path.suffix} file"
    return ImageInfo(
        format=image_format,
        mode=mode,
        width=width,
        height=height,
        digest=hashlib.blake2b(data, digest_size=16).hexdigest(),
        needs_pil=image_format == "BMP" and mode in _PIL_ONLY_BMP_MODES,
        note=note,
    )


def check_images(
    paths: Iterable[Path], advance: Callable[[int], None] | None = None
) -> dict[Path, ImageInfo | Problem]:
    """Check many files in parallel threads (Pillow releases the GIL while decoding)."""
    paths = list(paths)
    results: dict[Path, ImageInfo | Problem] = {}
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, result in zip(paths, pool.map(check_image, paths)):
            results[path] = result
            if advance is not None:
                advance(1)
    return results


def read_rgb(path: str | bytes, least_side: int | None = None) -> "numpy.ndarray":  # noqa: F821
    """Decode one file to an RGB uint8 array with Pillow (for the files TensorFlow misreads).

    With `least_side`, a JPEG is decoded at the smallest DCT scale that keeps it at least that
    large, as the training pipeline does; other formats always decode at full size.
    """
    path = path.decode() if isinstance(path, bytes) else path
    return decode_rgb(Url(path).read_bytes() if is_url(path) else Path(path).read_bytes(), least_side)


def decode_rgb(data: bytes, least_side: int | None = None) -> "numpy.ndarray":  # noqa: F821
    """Encoded bytes to an RGB uint8 array with Pillow (a packed image of a kind TensorFlow
    misreads, or a picture's pixels); `least_side` as for `read_rgb`."""
    import numpy as np

    with _pillow().open(io.BytesIO(bytes(data))) as image:
        if least_side is not None:
            image.draft("RGB", (least_side, least_side))
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def encoded_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, from its header."""
    with _pillow().open(io.BytesIO(bytes(data))) as image:
        return image.size
