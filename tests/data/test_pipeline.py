"""The tf.data pipeline: every accepted file becomes an RGB image of the requested size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers import write_image
from tlcli.data.dataset import Sample, load_dataset
from tlcli.data.pipeline import decode_image, image_dataset, tf


def _read(samples, image_size=16, batch_size=64, **kwargs):
    batches = list(image_dataset(samples, image_size, batch_size, with_index=True, **kwargs))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    indices = np.concatenate([b[2].numpy() for b in batches])
    return images, labels, indices


def test_every_kept_file_decodes_to_rgb_of_the_requested_size(messy_dataset):
    samples = load_dataset(messy_dataset).split("train")
    images, labels, indices = _read(samples, image_size=16)
    assert images.shape == (len(samples), 16, 16, 3)
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 255
    assert list(indices) == list(range(len(samples)))
    assert list(labels) == [s.label for s in samples]


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("RGBA", "PNG"), ("P", "BMP"), ("P", "GIF"), ("RGB", "WEBP"), ("CMYK", "JPEG")])
def test_colours_survive_conversion_to_rgb(tmp_path, mode, fmt):
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = (200, 30, 40)
    pixels[:, 8:] = (20, 180, 90)
    path = write_image(tmp_path / f"x.{fmt.lower()}", mode=mode, fmt=fmt, pixels=pixels)
    expected = np.asarray(Image.open(path).convert("RGB"), np.float32)
    sample = Sample(path, 0, needs_pil=(fmt == "BMP" and mode == "P"))
    images, _, _ = _read([sample], image_size=16)
    tolerance = 12 if fmt in ("JPEG", "WEBP") else 0.5
    np.testing.assert_allclose(images[0], expected, atol=tolerance)


def test_sixteen_bit_png_keeps_its_full_range(tmp_path):
    ramp = np.linspace(0, 65535, 16, dtype=np.uint16)[None, :].repeat(4, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    images, _, _ = _read([Sample(path, 0)], image_size=16)
    row = images[0, 0, :, 0]
    assert row[0] == pytest.approx(0, abs=1) and row[-1] == pytest.approx(255, abs=1)
    assert np.all(np.diff(row) > 0)  # scaled down, not clipped at 255


def _pillow_bilinear(pixels, image_size):
    """Pillow's BILINEAR resize of each channel as a float ("F") image, without uint8 rounding."""
    channels = [Image.fromarray(pixels[..., c].astype(np.float32)) for c in range(3)]
    return np.stack([np.asarray(c.resize((image_size, image_size), Image.BILINEAR)) for c in channels], -1)


@pytest.mark.parametrize("width, height, image_size", [
    (640, 480, 32), (100, 63, 32), (33, 50, 32), (31, 97, 32), (300, 7, 32), (32, 32, 32), (20, 20, 32), (50, 33, 75),
])
def test_resizing_is_pillows_bilinear_antialiased_when_shrinking(tmp_path, width, height, image_size):
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    resized = decode_image(buffer.getvalue(), image_size).numpy()
    assert resized.shape == (image_size, image_size, 3)
    np.testing.assert_allclose(resized, _pillow_bilinear(pixels, image_size), atol=5e-3)


def test_an_image_already_at_the_input_size_keeps_its_pixels_exactly():
    pixels = np.random.default_rng(32).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    decoded = decode_image(buffer.getvalue(), 32).numpy()
    np.testing.assert_array_equal(decoded, pixels.astype(np.float32))
    # What the antialiased resize gives at scale 1 too, so skipping it changes nothing.
    resized = tf.image.resize(pixels, [32, 32], method="bilinear", antialias=True).numpy()
    np.testing.assert_array_equal(resized, decoded)


@pytest.mark.parametrize("width, height, mode, progressive", [
    (640, 480, "RGB", False), (255, 300, "RGB", False), (63, 200, "RGB", True), (129, 257, "L", False), (40, 30, "RGB", False),
])
def test_jpeg_decodes_to_the_pixels_of_pillows_draft_then_bilinear(width, height, mode, progressive):
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, (x + y) % 32 * 8], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90, progressive=progressive)
    decoded = decode_image(buffer.getvalue(), 32).numpy()
    # draft() picks the DCT scale (1/8 for 640x480, 1/4 for 255x300, 1 for 63x200); the same
    # scale and the same (accurate integer) DCT give the same pixels.
    image = Image.open(buffer)
    image.draft("RGB", (32, 32))
    reference = _pillow_bilinear(np.asarray(image.convert("RGB")), 32)
    np.testing.assert_allclose(decoded, reference, atol=5e-3)


def test_shuffled_order_is_reproducible_under_a_seed(flat_dataset):
    samples = load_dataset(flat_dataset).split("train")
    _, _, first = _read(samples, shuffle=True, seed=3)
    _, _, again = _read(samples, shuffle=True, seed=3)
    _, _, other = _read(samples, shuffle=True, seed=4)
    assert list(first) == list(again)
    assert sorted(first) == list(range(len(samples)))
    assert list(first) != list(other)


def test_a_file_that_breaks_after_checking_is_dropped_alone(flat_dataset):
    samples = list(load_dataset(flat_dataset).split("train"))
    samples[3].path.write_bytes(b"garbage now")
    images, _, indices = _read(samples, batch_size=4)
    assert len(images) == len(samples) - 1 and 3 not in indices


def test_no_samples_give_an_empty_dataset():
    assert list(image_dataset([], 16, 4)) == []
