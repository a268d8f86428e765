"""Heatmaps: one class's map of one image, and drawing maps over images with Pillow (one
picture per image, and contact sheets).

A map covers the whole image (the model sees the whole image, resized to a square), so it is
stretched over the image as it is, whatever its shape. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tlcli.runs.captions import caption_font, shorten

DISPLAY_SIDE = 256  # the longer side of each panel of an image's picture, in pixels
TILE_SIDE = 160  # the side of a contact sheet's tiles
GAP = 6
CAPTION_LINE = 16
TILE_CAPTION_LINES = 2  # a contact sheet's tile shows the file's name and its caption's first two lines
BLEND = 0.45  # the map's share of each overlaid pixel
COLOURS = "jet"  # Grad-CAM's customary colour map: blue cold, red hot
PREDICTED = -1  # in place of a class index: explain the class the model predicts
METHODS = ("auto", "gradcam", "occlusion")  # how the maps are drawn (see tlcli.inference.explain.Explainer)


@dataclass(frozen=True)
class Heatmap:
    """One class's map of one image."""

    class_index: int
    probability: float
    values: np.ndarray  # float32 rows x columns covering the whole image, from 0 to 1; all 0 when flat

    def peak(self, width: int, height: int) -> dict | None:
        """The centre of the hottest cell, in the pixels of an image `width` x `height` (the model
        sees the whole image, resized); None for a flat map (a single cell, or all cells alike)."""
        if not self.values.max() > 0:
            return None
        row, column = np.unravel_index(np.argmax(self.values), self.values.shape)
        rows, columns = self.values.shape
        return {"x": int((column + 0.5) * width / columns), "y": int((row + 0.5) * height / rows)}


@dataclass(frozen=True)
class Panel:
    """A map to draw over an image, its caption (lines parted by newlines), and its peak (or None)
    in the pixels of the image at `image_size` (width, height), its size on disk."""

    caption: str
    values: np.ndarray
    peak: dict | None
    image_size: tuple[int, int]



def fit(image, width: int, height: int):
    """`image` scaled to fit in width x height, keeping its shape."""
    from PIL import Image

    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)


def overlay(image, panel: Panel):
    """The panel's map, coloured and stretched over the whole of `image` (a Pillow RGB image of
    any size), with a ring at its peak."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    stretched = Image.fromarray(np.asarray(panel.values, np.float32), mode="F").resize(
        image.size, Image.Resampling.BILINEAR
    )
    coloured = colormaps[COLOURS](np.clip(np.asarray(stretched), 0, 1))[..., :3]
    blended = (1 - BLEND) * np.asarray(image, np.float32) + BLEND * 255 * coloured
    result = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    if panel.peak is not None:
        width, height = panel.image_size
        x, y = panel.peak["x"] * image.width / width, panel.peak["y"] * image.height / height
        radius = max(4, min(image.size) // 24)
        draw = ImageDraw.Draw(result)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline="white", width=2)
        draw.ellipse((x - radius - 2, y - radius - 2, x + radius + 2, y + radius + 2), outline="black", width=1)
    return result


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def explanation_png(pixels: np.ndarray, title: str, panels: Sequence[Panel]) -> bytes:
    """The image, then the image under each panel's map, side by side under their captions."""
    return _png(explanation_image(pixels, title, panels))


def explanations_png(rows: Sequence[tuple[np.ndarray, str, Sequence[Panel]]]) -> bytes:
    """Several images' explanation pictures (pixels, title, panels), one below the other."""
    from PIL import Image

    pictures = [explanation_image(*row) for row in rows]
    sheet = Image.new("RGB", (max(picture.width for picture in pictures), sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        sheet.paste(picture, (0, top))
        top += picture.height
    return _png(sheet)


def explanation_image(pixels: np.ndarray, title: str, panels: Sequence[Panel]):
    from PIL import Image, ImageDraw

    source = Image.fromarray(pixels)
    shown = fit(source, DISPLAY_SIDE, DISPLAY_SIDE)
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), caption_font(13)
    width = max(shown.width, 120)
    columns = [([shorten(draw, title, font, width)], shown)] + [
        (_wrap(draw, panel.caption, font, width), overlay(shown, panel)) for panel in panels
    ]
    top = GAP + max(len(lines) for lines, _ in columns) * CAPTION_LINE + GAP
    sheet = Image.new("RGB", (GAP + len(columns) * (shown.width + GAP), top + shown.height + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for column, (lines, picture) in enumerate(columns):
        x = GAP + column * (shown.width + GAP)
        for line, text in enumerate(lines):
            draw.text((x, GAP + line * CAPTION_LINE), text, fill="black", font=font)
        sheet.paste(picture, (x, top))
    return sheet


def contact_sheet_png(tiles: Sequence[tuple[np.ndarray, Panel, str]], columns: int = 8) -> bytes:
    """A grid of tiles (pixels, the panel to draw over them, a first caption line), each
    captioned with that line and the first TILE_CAPTION_LINES of the panel's caption."""
    from PIL import Image, ImageDraw

    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    cell_height = TILE_SIDE + (1 + TILE_CAPTION_LINES) * CAPTION_LINE + GAP
    sheet = Image.new("RGB", (GAP + columns * (TILE_SIDE + GAP), GAP + rows * (cell_height + GAP)), "white")
    draw, font = ImageDraw.Draw(sheet), caption_font(13)
    for position, (pixels, panel, name) in enumerate(tiles):
        row, column = divmod(position, columns)
        x, y = GAP + column * (TILE_SIDE + GAP), GAP + row * (cell_height + GAP)
        tile = overlay(fit(Image.fromarray(pixels), TILE_SIDE, TILE_SIDE), panel)
        sheet.paste(tile, (x + (TILE_SIDE - tile.width) // 2, y + (TILE_SIDE - tile.height) // 2))
        for line, text in enumerate((name, *panel.caption.split("\n")[:TILE_CAPTION_LINES])):
            draw.text((x, y + TILE_SIDE + 2 + line * CAPTION_LINE), shorten(draw, text, font, TILE_SIDE),
                      fill="black", font=font)
    return _png(sheet)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """`text`'s lines, each broken between words to fit in `width` pixels (a word too long for a
    line cut with an ellipsis)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            if line and draw.textlength(f"{line} {word}", font=font) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(shorten(draw, line, font, width))
    return lines

