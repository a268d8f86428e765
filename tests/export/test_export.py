"""`tlcli export`: every format reloads outside tlcli and answers as the Keras model does.

The fast tests read one export of TinyNet that tlcli verified in a fresh process (conftest.py)
and check the other exports in this process; the whole suite also serves every format to a
client in a fresh interpreter, and interrupts and kills real exports."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CHILD_SITE, SOURCE_TREE, TESTS, runner
from tlcli.cli import app

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime"))
NO_ONNX = "the optional extra is not installed: pip install -e '.[onnx]' in the checkout (tf2onnx, onnxruntime)"
FORMATS = ["saved_model", "keras", "tflite"] + (["onnx"] if HAS_ONNX else [])  # as conftest.py's `exported`


def _export(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def _client_environment() -> dict:
    """This process's environment without the folders that make every child process register
    TinyNet (importing tlcli to do so): a client of the export must run without tlcli."""
    kept = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if path and Path(path).resolve() not in (CHILD_SITE.resolve(), TESTS.resolve())]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(kept)}


def _python(code: str, *args):
    """Run code in a fresh interpreter, as a client that knows nothing of tlcli; it prints one
    JSON document last."""
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300,
        env=_client_environment(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_format_is_written_and_verified_against_the_keras_model(exported, tiny_run):
    out, report = exported
    checks = {check["format"]: check for check in report["checks"]}
    assert set(checks) == set(FORMATS) | {"saved_model (bytes)"}
    for check in checks.values():
        assert check["passed"] and check["max_abs_difference"] <= 1e-4 and check["images"] >= 3
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert all((out / name).is_file() for name in ("model.keras", "model.tflite", "labels.txt"))
    assert (out / "labels.txt").read_text().split() == ["blue", "green", "red"]
    # Each weight stored once (keras-team/keras#23553 stores them twice after track()).
    weights = sum(path.stat().st_size for path in (out / "saved_model" / "variables").iterdir())
    assert weights < 1.1 * (out / "model.tflite").stat().st_size
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["backbone"] == "tinynet" and metadata["image_size"] == 32
    assert metadata["class_names"] == ["blue", "green", "red"]
    assert metadata["preprocessing"].startswith("tf")
    assert metadata["versions"]["tensorflow"].startswith("2.")
    assert [check["format"] for check in metadata["verification"]] == [c["format"] for c in report["checks"]]
    assert not [path for path in out.parent.iterdir() if path.name.startswith(".")], "staging folder left behind"


SAVED_MODEL_CLIENT = """
import json, sys
sys.modules["tlcli"] = None  # any import of tlcli now fails: serving must not need it
import numpy as np
import tensorflow as tf
path, pixels, files = sys.argv[1], np.load(sys.argv[2]), sys.argv[3:]
loaded = tf.saved_model.load(path)
by_pixels = loaded.signatures["serving_default"]
by_bytes = loaded.signatures["serving_bytes"]
encoded = tf.constant([open(name, "rb").read() for name in files])
first = by_pixels(images=tf.constant(pixels))["probabilities"].numpy()
again = by_pixels(images=tf.constant(pixels))["probabilities"].numpy()
from_bytes = by_bytes(image_bytes=encoded)["probabilities"].numpy()
print(json.dumps({
    "signatures": sorted(loaded.signatures),
    "pixels": first.tolist(), "repeat_identical": bool((first == again).all()),
    "bytes": from_bytes.tolist(),
}))
"""


@pytest.mark.subprocess
def test_saved_model_serves_pixels_and_image_bytes_in_plain_tensorflow(exported, reference):
    out, _ = exported
    served = _python(SAVED_MODEL_CLIENT, out / "saved_model", reference["pixels"], *reference["files"])
    assert served["signatures"] == ["serving_bytes", "serving_default"]
    pixels, from_bytes = np.array(served["pixels"]), np.array(served["bytes"])
    np.testing.assert_allclose(pixels, reference["probabilities"], atol=1e-4)
    assert served["repeat_identical"]  # no augmentation or dropout at serving time
    # PNG files sent as they are: decoded in the graph exactly as the training pipeline does.
    assert list(from_bytes.argmax(axis=1)) == list(pixels.argmax(axis=1))
    np.testing.assert_allclose(from_bytes, pixels, atol=1e-4)


TTA_CLIENT = """
import json, sys
sys.modules["tlcli"] = None  # serving must not need tlcli
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
pixels = np.load(sys.argv[2])
single, averaged = loaded.signatures["serving_default"], loaded.signatures["serving_tta"]
print(json.dumps({
    "signatures": sorted(loaded.signatures),
    "image": single(images=tf.constant(pixels))["probabilities"].numpy().tolist(),
    "mirror": single(images=tf.constant(pixels[:, :, ::-1].copy()))["probabilities"].numpy().tolist(),
    "tta": averaged(images=tf.constant(pixels))["probabilities"].numpy().tolist(),
}))
"""


@pytest.mark.subprocess
def test_tta_gets_a_signature_of_its_own_and_serving_default_stays_single_view(tiny_run, reference, tmp_path):
    out = tmp_path / "model"
    result = _export(tiny_run, "--out", out, "--tta", "--json")
    assert result.exit_code == 0, result.output
    checks = {check["format"]: check for check in json.loads(result.stdout)["checks"]}
    assert set(checks) == {"saved_model", "saved_model (bytes)", "saved_model (tta)"}
    assert all(check["passed"] for check in checks.values())
    served = _python(TTA_CLIENT, out / "saved_model", reference["pixels"])
    assert served["signatures"] == ["serving_bytes", "serving_default", "serving_tta"]
    image, mirror, averaged = (np.array(served[name]) for name in ("image", "mirror", "tta"))
    np.testing.assert_allclose(image, reference["probabilities"], atol=1e-4)  # one view, as without --tta
    np.testing.assert_allclose(averaged, (image + mirror) / 2, atol=1e-6)
    assert np.abs(averaged - image).max() > 1e-4
    signature = json.loads((out / "metadata.json").read_text())["saved_model_signatures"]["serving_tta"]
    assert signature["test_time_augmentation"] == "flip, 2 views: the image and its horizontal mirror"

    no_saved_model = _export(tiny_run, "--out", tmp_path / "other", "--tta-views", "crops", "--format", "tflite")
    assert no_saved_model.exit_code == 2 and "Add --format saved_model, or drop --tta" in no_saved_model.output
    assert not (tmp_path / "other").exists()


def test_serving_tta_averages_the_image_and_its_mirror_and_serving_default_stays_one_view(
        exported_with_tta, reference, tiny_run, tmp_path):
    """--tta checked in this process: the test above also has tlcli verify it and a fresh client serve it."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported_with_tta / "saved_model"))
    assert sorted(loaded.signatures) == ["serving_bytes", "serving_default", "serving_tta"]
    pixels = np.load(reference["pixels"])
    single, averaged = loaded.signatures["serving_default"], loaded.signatures["serving_tta"]
    image = single(images=tf.constant(pixels))["probabilities"].numpy()
    mirror = single(images=tf.constant(pixels[:, :, ::-1].copy()))["probabilities"].numpy()
    tta = averaged(images=tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(image, reference["probabilities"], atol=1e-4)  # one view, as without --tta
    np.testing.assert_allclose(tta, (image + mirror) / 2, atol=1e-6)
    assert np.abs(tta - image).max() > 1e-4
    metadata = json.loads((exported_with_tta / "metadata.json").read_text())
    signature = metadata["saved_model_signatures"]["serving_tta"]
    assert signature["test_time_augmentation"] == "flip, 2 views: the image and its horizontal mirror"
    assert metadata["verification"] == "skipped (--no-verify)"

    no_saved_model = _export(tiny_run, "--out", tmp_path / "other", "--tta-views", "crops", "--format", "tflite")
    assert no_saved_model.exit_code == 2 and "Add --format saved_model, or drop --tta" in no_saved_model.output
    assert not (tmp_path / "other").exists()


@pytest.mark.subprocess
def test_saved_model_cli_lists_both_signatures(exported):
    out, _ = exported
    command = shutil.which("saved_model_cli")
    command = [command] if command else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    shown = subprocess.run([*command, "show", "--dir", str(out / "saved_model"), "--all"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for expected in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                     "inputs['images']", "inputs['image_bytes']", "DT_STRING", "(-1, 32, 32, 3)",
                     "outputs['probabilities']"):
        assert expected in shown.stdout


# (format, width, height, mode, save options): larger, smaller and not square; JPEGs that decode
# at 1/8, 1/4, 1/2 and full scale at 32 px.
CLIENT_FILES = [
    ("png", 20, 20, "RGB", {}), ("png", 32, 32, "RGB", {}), ("png", 100, 63, "RGB", {}),
    ("png", 31, 97, "RGB", {}), ("png", 50, 40, "RGBA", {}), ("png", 50, 40, "I;16", {}),
    ("jpg", 640, 480, "RGB", {}), ("jpg", 255, 300, "RGB", {}), ("jpg", 130, 90, "L", {}),
    ("jpg", 63, 200, "RGB", {"progressive": True}), ("jpg", 40, 30, "RGB", {}),
    ("jpg", 300, 200, "CMYK", {}), ("gif", 60, 45, "P", {}), ("webp", 90, 70, "RGB", {}), ("bmp", 70, 50, "RGB", {}),
]


@pytest.fixture(scope="module")
def client_files(tmp_path_factory):
    """Photo-like images (smooth colour with noise) in every format and shape of CLIENT_FILES."""
    folder = tmp_path_factory.mktemp("client")
    rng = np.random.default_rng(0)
    paths = []
    for number, (fmt, width, height, mode, options) in enumerate(CLIENT_FILES):
        y, x = np.mgrid[0:height, 0:width]
        waves = [np.sin(x / (3 + c) + rng.uniform(0, 6)) * np.cos(y / (5 + c)) for c in range(3)]
        pixels = np.clip(128 + 100 * np.stack(waves, -1) + rng.normal(0, 30, (height, width, 3)), 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        if mode == "I;16":
            image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        elif mode != "RGB":
            image = image.convert(mode)
        path = folder / f"{number:02d}_{width}x{height}_{mode.replace(';', '')}.{fmt}"
        image.save(path, **options)
        paths.append(path)
    return paths


def _docs_recipe() -> str:
    """The `read_pixels` block of the export guide, as a user copies it into read_pixels.py."""
    blocks = re.findall(r"```python\n(.*?)```", (SOURCE_TREE / "docs" / "guides" / "export.md").read_text(), re.DOTALL)
    (recipe,) = [block for block in blocks if "def read_pixels(" in block]
    return recipe


RECIPE_CLIENT = """
import json, sys
folder, saved_model, size, pixels_path, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
sys.path.insert(0, folder)
from read_pixels import read_pixels
import numpy as np
pixels = np.stack([read_pixels(name, size) for name in files])
imported = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "tlcli", "keras"})
np.save(pixels_path, pixels)
import tensorflow as tf
loaded = tf.saved_model.load(saved_model)
by_pixels = loaded.signatures["serving_default"](images=tf.constant(pixels))["probabilities"].numpy()
encoded = tf.constant([open(name, "rb").read() for name in files])
by_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["probabilities"].numpy()
print(json.dumps({"imported": imported, "pixels": by_pixels.tolist(), "bytes": by_bytes.tolist()}))
"""


@pytest.mark.subprocess
def test_the_docs_pixel_recipe_gives_the_probabilities_of_serving_bytes(exported, client_files, tmp_path):
    from tlcli.data.pipeline import decode_image

    out, _ = exported
    (tmp_path / "read_pixels.py").write_text(_docs_recipe())
    pixels_path = tmp_path / "pixels.npy"
    served = _python(RECIPE_CLIENT, tmp_path, out / "saved_model", 32, pixels_path, *client_files)
    assert served["imported"] == []  # Pillow and NumPy only
    in_graph = np.stack([decode_image(path.read_bytes(), 32).numpy() for path in client_files])
    pixel_gap = np.abs(np.load(pixels_path) - in_graph).max(axis=(1, 2, 3))
    probability_gap = np.abs(np.array(served["pixels"]) - np.array(served["bytes"])).max(axis=1)
    gaps = "; ".join(f"{path.name}: pixels {pixels:.1e}, probabilities {probabilities:.1e}"
                     for path, pixels, probabilities in zip(client_files, pixel_gap, probability_gap))
    assert pixel_gap.max() <= 5e-3 and probability_gap.max() <= 1e-4, gaps  # measured: 2.5e-4, 8e-6


TFLITE_CLIENT = """
import json, sys, warnings
import numpy as np
import tensorflow as tf
warnings.simplefilter("ignore")
pixels = np.load(sys.argv[2])
interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
image_input = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(image_input["index"], list(pixels.shape))
interpreter.allocate_tensors()
interpreter.set_tensor(image_input["index"], pixels)
interpreter.invoke()
output = interpreter.get_output_details()[0]
print(json.dumps({"dtype": str(image_input["dtype"].__name__),
                  "probabilities": interpreter.get_tensor(output["index"]).tolist()}))
"""


@pytest.mark.subprocess
def test_tflite_file_runs_in_the_interpreter(exported, reference):
    out, _ = exported
    result = _python(TFLITE_CLIENT, out / "model.tflite", reference["pixels"])
    assert result["dtype"] == "float32"
    np.testing.assert_allclose(np.array(result["probabilities"]), reference["probabilities"], atol=1e-4)


ONNX_CLIENT = """
import json, sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
(image_input,), (output,) = session.get_inputs(), session.get_outputs()
probabilities = session.run(None, {image_input.name: np.load(sys.argv[2])})[0]
print(json.dumps({"input": image_input.name, "output": output.name,
                  "tensorflow_imported": "tensorflow" in sys.modules,
                  "probabilities": probabilities.tolist()}))
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not HAS_ONNX, reason=NO_ONNX)
def test_onnx_file_runs_in_onnxruntime_without_tensorflow(exported, reference):
    out, _ = exported
    result = _python(ONNX_CLIENT, out / "model.onnx", reference["pixels"])
    assert (result["input"], result["output"]) == ("images", "probabilities")
    assert not result["tensorflow_imported"]
    np.testing.assert_allclose(np.array(result["probabilities"]), reference["probabilities"], atol=1e-4)


@pytest.mark.subprocess
def test_int8_tflite_keeps_the_top_class_and_overwrite_replaces_the_folder(tiny_run, colour_dataset, tmp_path, exported):
    out = shutil.copytree(exported[0], tmp_path / "quantised")  # an earlier export
    (out / "stale.txt").write_text("from an earlier export")
    verify_on = colour_dataset / "test" / "red"
    refused = _export(tiny_run, "--out", out, "--format", "tflite", "--quantize", "int8")
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert (out / "stale.txt").exists()

    result = _export(tiny_run, "--out", out, "--format", "tflite", "--quantize", "int8",
                     "--verify-images", verify_on, "--overwrite", "--json")
    assert result.exit_code == 0, result.output
    (check,) = json.loads(result.stdout)["checks"]
    assert check["format"] == "tflite" and check["images"] == len(list(verify_on.iterdir()))
    assert check["top_class_agreement"] >= 0.75 and check["requirement"].startswith("top class agrees")
    # The earlier export's files are replaced; the one tlcli did not write is kept.
    assert sorted(path.name for path in out.iterdir()) == [".tlcli", "labels.txt", "metadata.json", "model.tflite",
                                                           "stale.txt"]
    float_size = (exported[0] / "model.tflite").stat().st_size
    assert (out / "model.tflite").stat().st_size < float_size / 2  # int8 weights: about a quarter
    assert json.loads((out / "metadata.json").read_text())["tflite_quantization"] == "int8"


def _tflite_probabilities(path, pixels) -> tuple[str, np.ndarray]:
    """The TFLite interpreter's input type and answers on `pixels`, in this process."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    image_input = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(image_input["index"], list(pixels.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(image_input["index"], pixels)
    interpreter.invoke()
    return image_input["dtype"].__name__, interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_int8_tflite_run_here_keeps_the_top_class_and_replaces_an_earlier_export(
        tiny_run, exported, reference, tmp_path):
    """int8 checked in this process (the test above has tlcli verify it in a fresh process).
    Calibration needs features of a trained model's scale, which TinyNet's random base gives
    (tests/tiny_backbone.py); its head is trained."""
    out = shutil.copytree(exported[0], tmp_path / "quantised")  # an earlier export
    (out / "stale.txt").write_text("from an earlier export")
    refused = _export(tiny_run, "--out", out, "--format", "tflite", "--quantize", "int8", "--no-verify")
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert (out / "stale.txt").exists()

    result = _export(tiny_run, "--out", out, "--format", "tflite", "--quantize", "int8", "--no-verify", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "│ tflite " in result.stdout and "Not verified (--no-verify)." in result.stdout
    # The earlier export's files are replaced; the one tlcli did not write is kept, and said so.
    assert sorted(path.name for path in out.iterdir()) == [".tlcli", "labels.txt", "metadata.json", "model.tflite",
                                                           "stale.txt"]
    assert f"kept stale.txt in {out}" in " ".join(result.output.split())
    assert (out / "model.tflite").stat().st_size < (exported[0] / "model.tflite").stat().st_size / 2
    assert json.loads((out / "metadata.json").read_text())["tflite_quantization"] == "int8"
    dtype, probabilities = _tflite_probabilities(out / "model.tflite", np.load(reference["pixels"]))
    assert dtype == "float32"  # pixels in and probabilities out stay float32
    agreement = np.mean(probabilities.argmax(axis=1) == reference["probabilities"].argmax(axis=1))
    assert len(probabilities) == 12 and agreement >= 0.75


def _when_staging_appears(folder, action):
    """Call `action` as soon as an export's staging folder holds a SavedModel, from a thread."""

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if list(folder.glob(".model.partial-*/saved_model")):
                return action()
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _as_in_a_terminal():
    """Give the child Ctrl-C's default action, as a terminal's foreground command has it; from a
    test runner started in the background (`pytest &`) it would inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_reaches_python():
    """Python's own Ctrl-C handler in this process, whatever the test runner was started with."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.subprocess
def test_ctrl_c_during_export_leaves_nothing_behind(tiny_run, tmp_path):
    out = tmp_path / "model"
    # SIGINT is what Ctrl-C sends; a child process keeps a late interrupt away from pytest itself.
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcli", "export", str(tiny_run), "--out", str(out), "--format", "saved_model",
         "--format", "tflite", "--no-verify"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal,
    )
    _when_staging_appears(tmp_path, lambda: process.send_signal(signal.SIGINT)).join()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Interrupted" in stderr
    assert list(tmp_path.iterdir()) == []  # neither --out nor the staging folder


class _PressesCtrlCWhenCollected:
    """Ctrl-C arriving while a finaliser runs, where Python drops the KeyboardInterrupt (it is how
    TensorFlow's AtomicFunction.__del__ swallowed one during the TFLite conversion)."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def test_a_ctrl_c_that_a_finaliser_swallows_still_stops_the_export(tiny_run, tmp_path, ctrl_c_reaches_python):
    from tlcli.events import Events
    from tlcli.export.export import ExportOptions, export_model

    class PressCtrlCInsideAFinaliser(Events):
        def note(self, message, level="info"):
            _PressesCtrlCWhenCollected()  # collected at once: the interrupt is raised and dropped in __del__

    with pytest.raises(KeyboardInterrupt):
        export_model(tiny_run, ExportOptions(out=tmp_path / "model", verify=False), PressCtrlCInsideAFinaliser())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.subprocess
def test_a_killed_export_leaves_nothing_at_out(tiny_run, tmp_path):
    out = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcli", "export", str(tiny_run), "--out", str(out), "--format", "saved_model",
         "--format", "tflite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _when_staging_appears(tmp_path, process.kill).join()
    assert process.wait(timeout=120) == -signal.SIGKILL
    assert not out.exists()
    # The staging folder, and the lock file, which no longer locks anything once its process is gone.
    left = sorted(path.name for path in tmp_path.iterdir())
    assert len(left) == 2 and left[0] == ".model.lock" and left[1].startswith(".model.partial-"), left


def test_verification_images_are_the_ones_given_or_a_few_of_each_class_of_the_test_split(
        tiny_run, colour_dataset, tmp_path):
    """What an export is checked on: --verify-images (files and folders; a file that is not a
    usable image is left out), else the run's test images, taken in turn from each class."""
    from tlcli.errors import TlcliError
    from tlcli.export.export import VERIFY_COUNT, ExportOptions, verification_samples
    from tlcli.runs.directory import read_run

    info, classes = read_run(tiny_run), ["blue", "green", "red"]
    chosen = verification_samples(info, ExportOptions(out=tmp_path / "out"))
    assert len(chosen) == VERIFY_COUNT == 8
    assert [sample.path.parent.name for sample in chosen] == classes * 2 + classes[:2]
    assert all(sample.path.parent.parent == colour_dataset / "test" for sample in chosen)
    assert all(sample.label == classes.index(sample.path.parent.name) for sample in chosen)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    one = colour_dataset / "val" / "blue" / "blue_0.png"
    given = verification_samples(info, ExportOptions(out=tmp_path / "out", verify_images=(
        colour_dataset / "test" / "red", broken, one)))
    assert [sample.path for sample in given] == sorted((colour_dataset / "test" / "red").iterdir()) + [one]
    with pytest.raises(TlcliError, match="--verify-images: none of the 1 file"):
        verification_samples(info, ExportOptions(out=tmp_path / "out", verify_images=(broken,)))
    with pytest.raises(TlcliError, match="nowhere does not exist"):
        verification_samples(info, ExportOptions(out=tmp_path / "out", verify_images=(tmp_path / "nowhere",)))


def test_bad_requests_fail_at_once_with_one_line(tiny_run, tmp_path, monkeypatch):
    into_the_run = _export(tiny_run, "--out", tiny_run, "--overwrite")
    assert into_the_run.exit_code == 2 and "holds the model being exported" in into_the_run.output
    assert (tiny_run / "model.keras").is_file()

    quantize_alone = _export(tiny_run, "--out", tmp_path / "a", "--quantize", "int8")
    assert quantize_alone.exit_code == 2 and "applies to TFLite only" in quantize_alone.output

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as on a machine without the extra
    no_onnx = _export(tiny_run, "--out", tmp_path / "b", "--format", "onnx")
    assert no_onnx.exit_code == 2 and 'Install it with pip install -e ".[onnx]" in the tlcli checkout' in no_onnx.output
    monkeypatch.undo()

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "model.keras").symlink_to(tiny_run / "model.keras")
    (lonely / "labels.txt").write_text("blue\ngreen\nred\n")
    no_data = _export(lonely / "model.keras", "--out", tmp_path / "c")
    assert no_data.exit_code == 2 and "--data" in no_data.output and "--verify-images" in no_data.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lonely"]  # nothing written
