"""Time and size of each export format, and the SavedModel's size with and without track().

    python bench/export_formats.py [MODEL]     (MODEL: run directory or .keras; default: an
                                                untrained VGG16 at 32x32 with 3 classes)

Prints one row per format (seconds to write, MB on disk, MB of the Keras model's weights) and,
side by side, a SavedModel written the way Keras documents it (`archive.track(model)` first),
which stores every weight twice (keras-team/keras#23553); tlcli leaves `track()` out.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tlcli

from tlcli.export.export import ARTEFACTS, write_onnx, write_saved_model, write_tflite  # noqa: E402
from tlcli.runs.names import LABELS, MODEL
from tlcli.models.saved import load_run_model  # noqa: E402
from tlcli.runtime import import_keras, import_tensorflow, silenced_stderr  # noqa: E402


def size_mb(path: Path) -> float:
    files = path.rglob("*") if path.is_dir() else [path]
    return sum(file.stat().st_size for file in files if file.is_file()) / 1e6


def untrained_run(folder: Path) -> Path:
    from tlcli.models.backbones import get_backbone
    from tlcli.models.build import build_classifier, build_head
    from tlcli.models.weights import WeightsSource, build_base

    spec = get_backbone("vgg16")
    base = build_base(spec, 32, WeightsSource("none"))
    model = build_classifier(spec, 32, base, build_head((spec.feature_size,), 3), "avg")
    model.save(folder / MODEL)
    (folder / LABELS).write_text("a\nb\nc\n")
    return folder


def saved_model_with_track(model, image_size: int, path: Path) -> None:
    tf, keras = import_tensorflow(), import_keras()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32)],
    )
    with silenced_stderr():
        archive.write_out(str(path), verbose=False)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="tlcli-bench-export-"))
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else untrained_run(scratch)
    model, info = load_run_model(source)
    weights_mb = sum(int(v.numpy().nbytes) for v in model.weights) / 1e6
    name = source if len(sys.argv) > 1 else "untrained vgg16"
    print(f"model: {name} ({info.image_size}x{info.image_size}, weights {weights_mb:.1f} MB)")
    saved_model = scratch / ARTEFACTS["saved_model"]
    steps = {
        "saved_model": lambda path: write_saved_model(model, info.image_size, path),
        "keras": lambda path: model.save(path),
        "tflite": lambda path: write_tflite(saved_model, path, None, [], info.image_size),
        "tflite dynamic": lambda path: write_tflite(saved_model, path, "dynamic", [], info.image_size),
        "onnx": lambda path: write_onnx(saved_model, path),
    }
    print(f"{'format':<24}{'seconds':>9}{'MB':>9}{'MB / weights':>14}")
    for name, write in steps.items():
        path = saved_model if name == "saved_model" else scratch / f"{name.replace(' ', '_')}{Path(ARTEFACTS[name.split()[0]]).suffix}"
        started = time.perf_counter()
        write(path)
        seconds = time.perf_counter() - started
        print(f"{name:<24}{seconds:>9.2f}{size_mb(path):>9.1f}{size_mb(path) / weights_mb:>14.2f}")
    tracked = scratch / "saved_model_tracked"
    started = time.perf_counter()
    saved_model_with_track(model, info.image_size, tracked)
    seconds = time.perf_counter() - started
    print(f"{'saved_model + track()':<24}{seconds:>9.2f}{size_mb(tracked):>9.1f}{size_mb(tracked) / weights_mb:>14.2f}")
    print(f"size ratio, track() / tlcli: {size_mb(tracked) / size_mb(saved_model):.2f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
