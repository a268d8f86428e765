"""tlcli.export.verify: each artefact reloaded with its own runtime and compared with the Keras model.

tlcli runs `main` in a fresh process (every export in tests/export/test_export.py goes through
it); here it runs in this process on the session's export, so that the fast suite reads what
each runtime answers, and the thresholds are checked on numbers made by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlcli.export.verify import DECISIONS_CHECK, FLOAT_TOLERANCE, _compare_decisions, compare, main


def _reload(tmp_path, artefacts: dict, pixels_path, image_files=(), tta: bool = False) -> dict:
    """What `python -m tlcli.export.verify` writes for these artefacts, run in this process."""
    request = {"pixels": str(pixels_path), "image_files": list(image_files), "tta": tta, "decisions": False,
               "artefacts": {name: str(path) for name, path in artefacts.items()},
               "output": str(tmp_path / "outputs.npz")}
    (tmp_path / "request.json").write_text(json.dumps(request))
    main(str(tmp_path / "request.json"))
    return dict(np.load(tmp_path / "outputs.npz"))


def test_every_format_is_reloaded_by_its_own_runtime_and_answers_as_keras(exported, reference, tmp_path):
    out, _ = exported
    artefacts = {name: out / path for name, path in
                 json.loads((out / "metadata.json").read_text())["files"].items()}
    outputs = _reload(tmp_path, artefacts, reference["pixels"], reference["files"])

    assert set(outputs) == set(artefacts) | {"saved_model_bytes"}
    for name, probabilities in outputs.items():
        assert probabilities.dtype == np.float32 and probabilities.shape == (12, 3), name
        np.testing.assert_allclose(probabilities, reference["probabilities"], atol=FLOAT_TOLERANCE, err_msg=name)


def test_serving_tta_is_reloaded_beside_serving_default(exported_with_tta, reference, tmp_path):
    outputs = _reload(tmp_path, {"saved_model": exported_with_tta / "saved_model"}, reference["pixels"], tta=True)

    pixels = np.load(reference["pixels"])
    mirrored = reference["model"](pixels[:, :, ::-1].copy(), training=False).numpy()
    assert set(outputs) == {"saved_model", "saved_model_tta"}  # no image files: no bytes signature run
    np.testing.assert_allclose(outputs["saved_model"], reference["probabilities"], atol=FLOAT_TOLERANCE)
    np.testing.assert_allclose(outputs["saved_model_tta"], (reference["probabilities"] + mirrored) / 2,
                               atol=FLOAT_TOLERANCE)


def test_an_artefact_that_cannot_be_loaded_is_one_line_naming_its_format(reference, tmp_path):
    broken = tmp_path / "model.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(SystemExit) as exit_:
        _reload(tmp_path, {"tflite": broken}, reference["pixels"])
    message = str(exit_.value.code)
    assert message.startswith("tflite could not be loaded and run: ") and "\n" not in message
    assert not (tmp_path / "outputs.npz").exists()


def test_verification_thresholds_for_float_and_quantised_formats():
    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    assert compare("onnx", reference + 5e-5, reference, quantized=False).passed
    drifted = compare("onnx", reference + 2e-4, reference, quantized=False)
    assert not drifted.passed and drifted.max_abs_difference == pytest.approx(2e-4)
    one_flip = reference.copy()
    one_flip[0] = [0.1, 0.2, 0.7]
    assert compare("tflite", one_flip, reference, quantized=True).top_class_agreement == 0.75
    assert compare("tflite", one_flip, reference, quantized=True).passed
    two_flips = one_flip.copy()
    two_flips[1] = [0.8, 0.1, 0.1]
    assert not compare("tflite", two_flips, reference, quantized=True).passed


def test_decisions_must_agree_wherever_a_probability_is_clear_of_its_threshold():
    """A multi-label SavedModel's 0/1 decisions: a probability within the float tolerance of its
    threshold may go either way (the export's rounding may cross it), any other must match."""
    reference = np.array([[0.9, 0.3], [0.5 + FLOAT_TOLERANCE / 2, 0.1]], np.float32)
    thresholds = np.array([0.5, 0.5], np.float32)
    decided = (reference >= thresholds).astype(np.int32)

    agreed = _compare_decisions({"saved_model_decisions_probabilities": reference,
                                 "saved_model_decisions": decided}, reference, thresholds)
    assert agreed.format == DECISIONS_CHECK and agreed.passed and agreed.top_class_agreement == 1.0

    at_the_threshold = decided.copy()
    at_the_threshold[1, 0] = 0  # within the tolerance of 0.5: either decision is right
    assert _compare_decisions({"saved_model_decisions_probabilities": reference,
                               "saved_model_decisions": at_the_threshold}, reference, thresholds).passed

    clear = decided.copy()
    clear[0, 1] = 1  # 0.3 is clear of 0.5: a wrong decision
    wrong = _compare_decisions({"saved_model_decisions_probabilities": reference,
                                "saved_model_decisions": clear}, reference, thresholds)
    assert not wrong.passed and wrong.top_class_agreement == pytest.approx(2 / 3)

    drifted = _compare_decisions({"saved_model_decisions_probabilities": reference + 2 * FLOAT_TOLERANCE,
                                  "saved_model_decisions": decided}, reference, thresholds)
    assert not drifted.passed
