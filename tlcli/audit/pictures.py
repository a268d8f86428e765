"""The audit's pictures, drawn with Pillow: galleries of suspects and outliers, and the
near-duplicate groups side by side, one group a row.

Each tile is an image fitted in a square, captioned below; an image that cannot be read again
(changed since the audit read it) keeps its caption over a grey square. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

from tlcli.runs.captions import caption_font, shorten

TILE = 128  # the side of a tile, in pixels
GAP = 6
LINE = 15  # the height of a caption line
ROW_TILES = 6  # tiles per row of a gallery; a duplicate group's row shows this many of its images
_LEAKAGE = (200, 30, 30)


@dataclass(frozen=True)
class Tile:
    image: bytes | None  # the encoded image (a file's bytes, or a packed record)
    lines: tuple[str, ...]  # its caption, a line each
    alert: bool = False  # captioned in red: the given label is doubted, or the group leaks


def gallery_png(tiles: Sequence[Tile], empty: str = "nothing to show") -> bytes:
    """The tiles in rows of ROW_TILES."""
    return sheet_png([list(tiles[start:start + ROW_TILES]) for start in range(0, len(tiles), ROW_TILES)], empty)


def sheet_png(rows: Sequence[Sequence[Tile]], empty: str = "nothing to show") -> bytes:
    """One row of tiles per entry of `rows` (a duplicate group per row, say)."""
    from PIL import Image, ImageDraw

    lines = max((len(tile.lines) for row in rows for tile in row), default=1)
    cell = TILE + 2 + lines * LINE + GAP
    columns = max((len(row) for row in rows), default=1)
    sheet = Image.new("RGB", (GAP + max(columns, 1) * (TILE + GAP), GAP + max(len(rows), 1) * cell), "white")
    draw, font = ImageDraw.Draw(sheet), caption_font(12)
    if not rows:
        draw.text((GAP, GAP), empty, fill="black", font=font)
    for row_number, row in enumerate(rows):
        for column, tile in enumerate(row):
            x, y = GAP + column * (TILE + GAP), GAP + row_number * cell
            picture = _fitted(tile.image)
            sheet.paste(picture, (x + (TILE - picture.width) // 2, y + (TILE - picture.height) // 2))
            for number, text in enumerate(tile.lines):
                draw.text((x, y + TILE + 2 + number * LINE), shorten(draw, text, font, TILE),
                          fill=_LEAKAGE if tile.alert else "black", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _fitted(image: bytes | None):
    """The image scaled to fit in a tile, keeping its shape; a grey tile when it cannot be read."""
    from PIL import Image

    from tlcli.data.images import decode_rgb

    try:
        picture = Image.fromarray(decode_rgb(image, least_side=TILE)) if image is not None else None
    except Exception:  # changed or damaged since the audit read it: the caption still says which
        picture = None
    if picture is None:
        return Image.new("RGB", (TILE, TILE), (200, 200, 200))
    scale = TILE / max(picture.width, picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)


