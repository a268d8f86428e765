"""TFLite sizes and agreement of a backbone's float32, dynamic and int8 exports, without ImageNet.

    python bench/export_int8.py [MODEL] [IMAGE_SIZE]     (default: mobilenetv3small 224)

ImageNet weights cannot be downloaded everywhere, and purely random weights are no stand-in for
quantisation: random MobileNetV3 features are about 3e-11, far below what int8 activations
resolve, so int8 keeps the top class on 25% of images (chance). Here the backbone's random
weights get BatchNormalization statistics recomputed on the training images, layer by layer,
so every activation has unit scale as with trained weights; then `tlcli train --weights FILE`
(solved head) on the colour dataset of the tests, and `tlcli export -f tflite` with each
--quantize, whose own verification (a fresh process, 8 images) gives the figures.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's tlcli, and the tests' helpers

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from helpers import runner, write_colour_dataset  # noqa: E402
from tlcli.cli import app  # noqa: E402
from tlcli.models.backbones import get_backbone  # noqa: E402
from tlcli.models.weights import WeightsSource, build_base  # noqa: E402
from tlcli.runtime import import_keras  # noqa: E402


def tlcli(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


def calibrated_base(spec, size: int, images: np.ndarray):
    """Random weights, with each BatchNormalization's statistics those of its input on `images`."""
    keras = import_keras()
    base = build_base(spec, size, WeightsSource("none"))
    pixels = spec.preprocess_function()(images.copy())
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = np.asarray(keras.Model(base.input, layer.input)(pixels, training=False))
            layer.moving_mean.assign(inputs.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(inputs.var(axis=(0, 1, 2)) + 1e-3)
    return base


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "mobilenetv3small"
    spec = get_backbone(name)
    size = int(sys.argv[2]) if len(sys.argv) > 2 else spec.default_size
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = write_colour_dataset(scratch / "data", size=(size, size))
        files = sorted((data / "train").rglob("*.png"))
        images = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in files])
        weights = scratch / f"{name}.weights.h5"
        calibrated_base(spec, size, images).save_weights(weights)
        code, output = tlcli("train", data, "--model", name, "--weights", weights, "--image-size", size,
                             "--batch-size", 8, "--quiet", "--out", scratch / "run")
        assert code == 0, output
        print(f"{name} at {size} px, BatchNormalization-calibrated random weights, solved head")
        print(f"{'quantize':<10}{'MB':>8}{'max |diff|':>12}{'top class':>11}  verification")
        for quantize in ("none", "dynamic", "float16", "int8"):
            out = scratch / f"export-{quantize}"
            code, output = tlcli("export", scratch / "run", "--format", "tflite", "--out", out,
                                 *(["--quantize", quantize] if quantize != "none" else []))
            if code:
                print(f"{quantize:<10}{'-':>8}{'-':>12}{'-':>11}  failed: {output.strip().splitlines()[-1]}")
                continue
            (check,) = json.loads((out / "metadata.json").read_text())["verification"]
            megabytes = (out / "model.tflite").stat().st_size / 1e6
            print(f"{quantize:<10}{megabytes:>8.2f}{check['max_abs_difference']:>12.2g}"
                  f"{check['top_class_agreement']:>11.0%}  passed on {check['images']} images")


if __name__ == "__main__":
    main()
