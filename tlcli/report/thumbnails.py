"""The pictures a report inlines, as `data:` URIs: images shrunk to thumbnails (a few kilobytes
each, so that hundreds keep the page light) and plots at no more than a screen's width.

Nothing here imports TensorFlow; Pillow decodes and encodes.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Callable, Sequence

from tlcli.storage import location

THUMBNAIL_SIDE = 96  # pixels: the longer side of a thumbnail
THUMBNAIL_QUALITY = 80  # JPEG
PICTURE_WIDTH = 1100  # pixels: a plot wider than this is scaled down
MAP_SIDE = 240  # pixels: the longer side of an explanation's picture beside its thumbnail

Images = Callable[[Sequence[str]], "list[bytes | None]"]  # encoded images by path; None where unreadable


def data_uri(content: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(content).decode('ascii')}"


def thumbnail_uri(encoded: bytes | None, side: int = THUMBNAIL_SIDE) -> str | None:
    """A JPEG of the image fitted in a `side` square (small images scaled up without blurring);
    None when the image cannot be read."""
    if encoded is None:
        return None
    from PIL import Image

    from tlcli.data.images import decode_rgb

    try:
        picture = Image.fromarray(decode_rgb(encoded, least_side=side))
    except Exception:  # gone, damaged or not an image since it was evaluated: the caption still says which
        return None
    scale = side / max(picture.width, picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return data_uri(buffer.getvalue(), "image/jpeg")


def picture_uri(png: bytes | None, width: int = PICTURE_WIDTH) -> str | None:
    """A PNG plot as it is, or scaled down to `width` pixels when wider; None when there is none
    or it cannot be read."""
    if png is None:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as picture:
            if picture.width <= width:
                picture.verify()
                return data_uri(png, "image/png")
            picture = picture.convert("RGB")
            picture = picture.resize((width, max(1, round(picture.height * width / picture.width))),
                                     Image.Resampling.LANCZOS)
    except Exception:  # a damaged file: the page goes on without it
        return None
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return data_uri(buffer.getvalue(), "image/png")


@dataclass
class Tile:
    """An image on the page: its thumbnail (filled in by `fill_tiles`) and its caption's lines."""

    path: str
    lines: list[str]
    alert: bool = False  # captioned as a warning (a leak across splits, a doubted label)
    map_path: str | None = None  # an explanation's picture to show beside it
    thumbnail: str | None = None
    map: str | None = None


def fill_tiles(tiles: Sequence[Tile], images: Images, advance: Callable[[int], None] = lambda count: None,
               batch: int = 64) -> None:
    """Read the tiles' images (and maps) through `images`, `batch` at a time, each batch counted
    with `advance`, and give each tile its thumbnail."""
    for start in range(0, len(tiles), batch):
        chunk = tiles[start:start + batch]
        for tile, encoded in zip(chunk, images([tile.path for tile in chunk])):
            tile.thumbnail = thumbnail_uri(encoded)
        mapped = [tile for tile in chunk if tile.map_path]
        for tile, encoded in zip(mapped, read_files([tile.map_path for tile in mapped])):
            tile.map = thumbnail_uri(encoded, MAP_SIDE)
        advance(len(chunk))


def read_files(paths: Sequence[str]) -> list[bytes | None]:
    """Each file's bytes (a path or a URL), None where it is gone or cannot be read."""
    found = []
    for path in paths:
        try:
            found.append(location(path).read_bytes())
        except Exception:  # gone, unreadable, a bad URL: the tile shows its caption alone
            found.append(None)
    return found
