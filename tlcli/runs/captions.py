"""Text on tlcli's pictures (explain's maps, audit's galleries): Pillow's font and a line cut to fit."""

from __future__ import annotations


def caption_font(size: int):
    """Pillow's default font at `size` pixels, or its fixed bitmap font where Pillow cannot scale it."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType scaling
        return ImageFont.load_default()


def shorten(draw, text: str, font, width: int) -> str:
    """`text`, cut with an ellipsis to fit in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
