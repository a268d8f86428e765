"""Loading the models tlcli saved, in Keras's safe mode: a run or its model.keras gives the model it
trained, and a damaged file or one naming outside code is refused in one line."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tlcli.errors import TlcliError
from tlcli.models.saved import check_keras_file, load_keras_model, load_placed_model, load_run_model


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)


def test_a_run_or_its_model_file_loads_with_its_classes_and_size(solved_run, pixels):
    model, info = load_run_model(solved_run)
    assert info.class_names == ("blue", "green", "red") and info.image_size == 32 and info.backbone == "tinynet"
    probabilities = np.asarray(model(pixels))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    from_file, file_info = load_run_model(solved_run / "model.keras")
    assert file_info.class_names == info.class_names and file_info.image_size == 32
    np.testing.assert_array_equal(np.asarray(from_file(pixels)), probabilities)


def _rewritten(source, target, architecture=None, drop_architecture=False):
    """A copy of the .keras archive `source` with its config.json replaced (or left out)."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as copy:
        for item in archive.infolist():
            if item.filename != "config.json":
                copy.writestr(item, archive.read(item))
            elif not drop_architecture:
                copy.writestr(item, json.dumps(architecture) if architecture is not None else archive.read(item))
    return target


def _one_line_error(path) -> str:
    with pytest.raises(TlcliError) as raised:
        load_keras_model(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize("damage", ["truncated", "no architecture", "not json"])
def test_a_damaged_model_file_is_one_line_saying_so(solved_run, tmp_path, damage):
    source = solved_run / "model.keras"
    path = tmp_path / "model.keras"
    if damage == "truncated":
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    elif damage == "no architecture":
        _rewritten(source, path, drop_architecture=True)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{not json")
    assert "is damaged or not a Keras model file" in _one_line_error(path)


def test_a_model_file_naming_code_outside_keras_and_tlcli_is_refused(solved_run, tmp_path):
    architecture = json.loads(zipfile.ZipFile(solved_run / "model.keras").read("config.json"))
    architecture["config"]["layers"][-1]["module"] = "evil.payload"
    architecture["config"]["layers"][-1]["class_name"] = "Backdoor"
    path = _rewritten(solved_run / "model.keras", tmp_path / "model.keras", architecture)
    with pytest.raises(TlcliError, match=r"names evil\.payload\.Backdoor in its config\.json, neither a Keras nor a "
                                         r"tlcli class"):
        check_keras_file(path)
    _one_line_error(path)
    check_keras_file(solved_run / "model.keras")  # tlcli's own file passes


def test_a_file_keras_cannot_build_is_one_line_naming_what_failed(solved_run, tmp_path):
    architecture = {"module": "keras.layers", "class_name": "NoSuchLayer", "config": {}, "registered_name": None}
    path = _rewritten(solved_run / "model.keras", tmp_path / "model.keras", architecture)
    assert "cannot be loaded as a Keras model: " in _one_line_error(path)


def test_a_placed_model_computes_in_the_placements_precision_with_float32_ends(solved_run, pixels):
    import dataclasses

    import tensorflow as tf

    from tlcli.distribute.placement import Placement

    default = Placement(tf.distribute.get_strategy(), "default", ("CPU:0",), 1)
    reference, _ = load_placed_model(solved_run, default)
    model, info = load_placed_model(solved_run, dataclasses.replace(default, precision="mixed_bfloat16"))
    assert info.image_size == 32
    base = model.get_layer("tinynet")
    assert base.get_layer("block1_conv1").compute_dtype == "bfloat16"
    head = model.get_layer("head")
    assert head.get_layer("standardization").compute_dtype == head.get_layer("predictions").compute_dtype == "float32"
    assert {layer.compute_dtype for layer in reference._flatten_layers()} == {"float32"}
    mixed = model(pixels)
    assert mixed.dtype == "float32"
    # bfloat16 keeps about three significant digits: the same probabilities, give or take 2 %.
    np.testing.assert_allclose(np.asarray(mixed), np.asarray(reference(pixels)), atol=0.02)
