"""Checking exported artefacts by reloading them in a fresh process.

The exporting process holds the Keras model and everything traced from it, so a reload there
could succeed where a server would fail. `verify_artefacts` therefore saves the images, starts
`python -m tlcli.export.verify REQUEST.json`, which loads each artefact with its own runtime (plain
TensorFlow for the SavedModel, the TFLite interpreter, onnxruntime, Keras in safe mode), and
compares what comes back with the Keras model's probabilities.

Nothing heavy is imported at module level: the child imports TensorFlow itself, and tlcli's
Keras layers only for the `.keras` file, after the SavedModel has been loaded without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLOAT_TOLERANCE = 1e-4  # max |difference| in probability for float32 artefacts
QUANTIZED_MIN_AGREEMENT = 0.75  # share of images whose top class a quantised TFLite model keeps
BYTES_CHECK = "saved_model (bytes)"
TTA_CHECK = "saved_model (tta)"
DECISIONS_CHECK = "saved_model (decisions)"


@dataclass(frozen=True)
class Check:
    """How closely a reloaded artefact reproduces the Keras model on the verification images."""

    format: str
    images: int
    max_abs_difference: float
    top_class_agreement: float
    requirement: str
    passed: bool


def compare(name: str, probabilities, reference, quantized: bool) -> Check:
    import numpy as np

    difference = float(np.max(np.abs(probabilities - reference)))
    agreement = float(np.mean(np.argmax(probabilities, axis=1) == np.argmax(reference, axis=1)))
    if quantized:
        requirement, passed = f"top class agrees >= {QUANTIZED_MIN_AGREEMENT:.0%}", agreement >= QUANTIZED_MIN_AGREEMENT
    else:
        requirement, passed = f"|difference| <= {FLOAT_TOLERANCE:g}", difference <= FLOAT_TOLERANCE
    return Check(name, len(reference), difference, agreement, requirement, passed)


def verify_artefacts(model, files: dict[str, Path], samples, image_size: int, quantize: str | None,
                     tta: str | None = None, thresholds: list[float] | None = None) -> list:
    """Reload every artefact in a fresh process and compare it with `model` on `samples` (and the
    SavedModel's serving_tta, with a `tta` view set, with the model's mean over those views; and
    a multi-label model's serving_decisions with the model's decisions at `thresholds`)."""
    import numpy as np

    from tlcli.data.pipeline import image_dataset
    from tlcli.errors import TlcliError
    from tlcli.models.tta import MultiViewClassifier

    batches = list(image_dataset(samples, image_size, 32, with_index=True))
    pixels = np.concatenate([images.numpy() for images, _, _ in batches])
    kept = [samples[int(index)] for _, _, indices in batches for index in indices.numpy()]
    reference = model(pixels, training=False).numpy()
    tta_reference = MultiViewClassifier(model, tta, average=True)(pixels).numpy() if tta else None
    # The bytes signature decodes with TensorFlow, so it is compared on the files that the
    # training pipeline decodes with TensorFlow too (not the few it hands to Pillow).
    bytes_rows = [row for row, sample in enumerate(kept) if not sample.needs_pil]

    with tempfile.TemporaryDirectory(prefix="tlcli-verify-") as scratch:
        scratch = Path(scratch)
        np.save(scratch / "pixels.npy", pixels)
        request = {
            "pixels": str(scratch / "pixels.npy"),
            "image_files": _image_files([kept[row] for row in bytes_rows], scratch),
            "artefacts": {name: str(path) for name, path in files.items()},
            "tta": tta is not None,
            "decisions": thresholds is not None,
            "output": str(scratch / "outputs.npz"),
        }
        (scratch / "request.json").write_text(json.dumps(request))
        # The child imports this very tlcli (not another copy on its path) and stays quiet.
        package_root = str(Path(__file__).resolve().parents[1])
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, "PYTHONPATH": python_path,
                       "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        result = subprocess.run(
            [sys.executable, "-m", "tlcli.export.verify", str(scratch / "request.json")],
            capture_output=True, text=True, env=environment,
        )
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise TlcliError(
                "Reloading the export in a fresh process failed, so nothing was written to --out: "
                f"{lines[-1] if lines else f'exit code {result.returncode}'}"
            )
        outputs = dict(np.load(request["output"]))

    checks = [
        compare(name, outputs[name], reference, quantized=(name == "tflite" and quantize is not None))
        for name in files
    ]
    if "saved_model" in files and bytes_rows:
        checks.append(compare(BYTES_CHECK, outputs["saved_model_bytes"], reference[bytes_rows], quantized=False))
    if "saved_model" in files and tta_reference is not None:
        checks.append(compare(TTA_CHECK, outputs["saved_model_tta"], tta_reference, quantized=False))
    if "saved_model" in files and thresholds is not None:
        checks.append(_compare_decisions(outputs, reference, np.asarray(thresholds, np.float32)))
    return checks


def _compare_decisions(outputs: dict, reference, thresholds) -> Check:
    """serving_decisions against the model: its probabilities within the float tolerance, and
    its decisions equal to the model's wherever a probability is clear of its threshold (within
    the tolerance of one, either decision is right)."""
    import numpy as np

    probabilities = compare(DECISIONS_CHECK, outputs["saved_model_decisions_probabilities"], reference, quantized=False)
    clear = np.abs(reference - thresholds) > FLOAT_TOLERANCE
    agree = outputs["saved_model_decisions"] == (reference >= thresholds)
    share = float(np.mean(agree[clear])) if clear.any() else 1.0
    return Check(DECISIONS_CHECK, len(reference), probabilities.max_abs_difference, share,
                 f"{probabilities.requirement}, decisions agree", probabilities.passed and share == 1.0)


# --- the fresh process -------------------------------------------------------------------------


def _run_saved_model(path: str, pixels, image_files: list[str], tta: bool, decisions: bool = False) -> dict:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    outputs = {"saved_model": loaded.signatures["serving_default"](images=tf.constant(pixels))["probabilities"]}
    if decisions:
        decided = loaded.signatures["serving_decisions"](images=tf.constant(pixels))
        outputs["saved_model_decisions_probabilities"] = decided["probabilities"]
        outputs["saved_model_decisions"] = decided["decisions"]
    if tta:
        outputs["saved_model_tta"] = loaded.signatures["serving_tta"](images=tf.constant(pixels))["probabilities"]
    if image_files:
        encoded = tf.constant([Path(file).read_bytes() for file in image_files])
        outputs["saved_model_bytes"] = loaded.signatures["serving_bytes"](image_bytes=encoded)["probabilities"]
    return {name: value.numpy() for name, value in outputs.items()}


def _run_tflite(path: str, pixels) -> dict:
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about ai-edge-litert
        interpreter = Interpreter(model_path=path)
    image_input = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(image_input["index"], list(pixels.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(image_input["index"], pixels)
    interpreter.invoke()
    return {"tflite": interpreter.get_tensor(interpreter.get_output_details()[0]["index"])}


def _run_onnx(path: str, pixels) -> dict:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return {"onnx": session.run(None, {session.get_inputs()[0].name: pixels})[0]}


def _run_keras(path: str, pixels) -> dict:
    import tlcli.models.layers  # noqa: F401  (tlcli's registered layers; safe mode needs no other code)
    from tlcli.runtime import import_keras

    model = import_keras().saving.load_model(path, compile=False, safe_mode=True)
    return {"keras": model(pixels, training=False).numpy()}


def _image_files(samples, scratch: Path) -> list[str]:
    """The samples' image files; a packed sample's bytes are written into `scratch` first."""
    from tlcli.data.packed import read_encoded

    positions: dict = {}
    for sample in samples:
        if sample.record is not None:
            positions.setdefault(sample.record[0], []).append(sample.record[1])
    encoded = {(split, position): image for split, wanted in positions.items()
               for position, image in zip(wanted, read_encoded(split, wanted))}
    files = []
    for row, sample in enumerate(samples):
        if sample.record is None:
            files.append(str(sample.path))
            continue
        path = scratch / f"packed-{row}{sample.path.suffix}"
        path.write_bytes(encoded[sample.record])
        files.append(str(path))
    return files


def main(request_path: str) -> None:
    import numpy as np

    from tlcli.runtime import import_tensorflow

    request = json.loads(Path(request_path).read_text())
    pixels = np.load(request["pixels"])
    if set(request["artefacts"]) - {"onnx"}:
        import_tensorflow()
    runners = {
        "saved_model": lambda path: _run_saved_model(path, pixels, request["image_files"], request["tta"],
                                                     request.get("decisions", False)),
        "tflite": lambda path: _run_tflite(path, pixels),
        "onnx": lambda path: _run_onnx(path, pixels),
        "keras": lambda path: _run_keras(path, pixels),  # last: it imports tlcli's layers
    }
    outputs = {}
    for name, run in runners.items():
        if name in request["artefacts"]:
            try:
                outputs.update(run(request["artefacts"][name]))
            except Exception as error:
                message = str(error).strip().splitlines()
                sys.exit(f"{name} could not be loaded and run: {message[0] if message else type(error).__name__}")
    np.savez(request["output"], **{name: np.asarray(value, np.float32) for name, value in outputs.items()})


if __name__ == "__main__":
    main(sys.argv[1])

