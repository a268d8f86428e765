"""tlcli.report.thumbnails: the pictures a report inlines stay small, and a picture that cannot be
read leaves its caption alone instead of failing the page."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from helpers import png_bytes
from tlcli.report.thumbnails import PICTURE_WIDTH, THUMBNAIL_SIDE, Tile, fill_tiles, picture_uri, thumbnail_uri


def _photo(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A photo-like image: smooth shapes under a little noise."""
    rows, columns = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    pixels = np.stack([128 + 100 * np.sin(columns / 40), 128 + 100 * np.cos(rows / 30), (rows + columns) % 256], -1)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(uri: str) -> tuple[str, bytes, Image.Image]:
    header, _, payload = uri.partition(",")
    content = base64.b64decode(payload)
    return header, content, Image.open(io.BytesIO(content))


def test_a_photo_becomes_a_thumbnail_of_a_few_kilobytes():
    header, content, picture = _decoded(thumbnail_uri(_photo(640, 480)))
    assert header == "data:image/jpeg;base64" and picture.size == (THUMBNAIL_SIDE, 72)
    assert len(content) < 8_000, "three hundred of them weigh under 2.4 MB"


def test_a_tiny_image_is_scaled_up_without_blurring():
    pixels = np.zeros((10, 12, 3), np.uint8)
    pixels[:, 6:] = 255  # left half black, right half white
    _, _, picture = _decoded(thumbnail_uri(_png(pixels)))
    assert picture.size == (THUMBNAIL_SIDE, 80)
    row = np.asarray(picture.convert("L"))[40]
    assert row[:44].max() < 40 and row[52:].min() > 215, "sharp edge, as the pixels were"


def test_a_wide_plot_is_narrowed_and_a_small_one_kept_as_it_is():
    small = png_bytes((300, 200))
    assert _decoded(picture_uri(small))[1] == small
    _, _, picture = _decoded(picture_uri(_photo(2 * PICTURE_WIDTH, 400, "PNG")))
    assert picture.size == (PICTURE_WIDTH, 200)


def test_what_cannot_be_read_has_no_picture_and_the_rest_do(tmp_path):
    assert thumbnail_uri(None) is None and thumbnail_uri(b"not an image") is None and picture_uri(b"\x89PNG junk") is None
    (tmp_path / "map.png").write_bytes(png_bytes((400, 300)))
    tiles = [Tile("a.jpg", ["a.jpg"], map_path=str(tmp_path / "map.png")), Tile("gone.jpg", ["gone.jpg"],
                                                                                 map_path=str(tmp_path / "gone.png"))]
    counted = []
    fill_tiles(tiles, lambda paths: [_photo(64, 48) if path == "a.jpg" else None for path in paths], counted.append)
    assert tiles[0].thumbnail.startswith("data:image/jpeg") and tiles[0].map.startswith("data:image/jpeg")
    assert tiles[1].thumbnail is None and tiles[1].map is None and sum(counted) == 2
