"""Where a backbone's starting weights come from: ImageNet, nothing, a weights file, an earlier run."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest

import tiny_backbone
from helpers import copy_to_url
from tlcli.errors import TlcliError
from tlcli.models.backbones import BACKBONES, cached_weights_path, get_backbone
from tlcli.models.saved import load_run_model
from tlcli.models.weights import (
    WeightsSource,
    build_base,
    find_base,
    keras_model_name_matches,
    parse_weights,
)

TINY = tiny_backbone.TINY
# TinyNet's row in the fast suite; the real backbones' (seconds each to build) in the whole suite.
ROWS = [pytest.param(TINY, id=TINY.name)] + [pytest.param(spec, id=spec.name, marks=pytest.mark.slow)
                                             for spec in BACKBONES.values() if spec is not TINY]


@pytest.mark.parametrize("spec", ROWS)
def test_weights_from_a_local_file_load_identically(spec, bases, tmp_path):
    source = bases[spec.name]
    path = tmp_path / f"{spec.name}.weights.h5"
    source.save_weights(path)
    loaded = build_base(spec, spec.min_size, parse_weights(str(path)))
    for expected, actual in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_a_weights_file_for_another_backbone_is_a_clear_error(bases, tmp_path):
    path = tmp_path / "tinynet.weights.h5"
    bases[TINY.name].save_weights(path)
    with pytest.raises(TlcliError, match=r"does not fit vgg16 without its top.*Use a file saved from vgg16"):
        build_base(get_backbone("vgg16"), 32, parse_weights(str(path)))


def test_imagenet_offline_fails_fast_naming_file_and_cache():
    spec = get_backbone("vgg16")
    if cached_weights_path(spec):
        pytest.skip("ImageNet weights are cached on this machine; the offline path cannot run")
    with pytest.raises(TlcliError) as raised:
        build_base(spec, 32, WeightsSource("imagenet"))
    message = str(raised.value)
    assert "could not be downloaded" in message
    assert spec.weights_file in message and ".keras/models" in message
    assert "--weights none" in message and "--weights PATH" in message


@pytest.mark.parametrize(
    "value, message",
    [("nope.h5", "no such file or folder"), ("weights.txt", r"\.txt is not a weights format")],
)
def test_bad_weights_values_are_clear_errors(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(TlcliError, match=message):
        parse_weights(value)


def test_names_and_paths_are_read_as_their_kind(solved_run, tmp_path):
    assert parse_weights(" ImageNet ") == WeightsSource("imagenet")
    assert parse_weights("none") == parse_weights("Random") == WeightsSource("none")
    model = (solved_run / "model.keras").resolve()
    assert parse_weights(str(solved_run)) == parse_weights(str(model)) == WeightsSource("model", model)
    assert str(WeightsSource("model", model)) == str(model) and str(WeightsSource("none")) == "none"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("weights.h5", b"not hdf5 at all", "is not an HDF5 weights file, whatever its name says"),
        ("model.keras", b"not a zip archive", "is not a Keras model (a zip archive), whatever its name says"),
        ("run", None, "the folder has no model.keras, so it is not a tlcli run"),
    ],
    ids=["h5", "keras", "folder"],
)
def test_a_file_that_is_not_what_its_name_says_is_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(TlcliError) as raised:
        parse_weights(str(path))
    assert str(raised.value).startswith(f"--weights {path}") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def _trained_base(run):
    return find_base(load_run_model(run)[0], TINY)


def test_an_earlier_runs_backbone_starts_a_new_one_at_another_size(solved_run):
    base = build_base(TINY, 48, parse_weights(str(solved_run)))
    assert base.input_shape == (None, 48, 48, 3)
    for expected, actual in zip(_trained_base(solved_run).get_weights(), base.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_a_run_at_a_url_gives_its_backbone(solved_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(solved_run, run)
    url = copy_to_url(run, f"ram://{uuid.uuid4().hex[:8]}/run")
    source = parse_weights(url)
    assert source.kind == "model" and source.path.is_file()
    base = build_base(TINY, TINY.min_size, source)
    for expected, actual in zip(_trained_base(solved_run).get_weights(), base.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_a_model_without_the_backbone_names_its_layers_and_the_fix(bases):
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="only_dense")(inputs))
    with pytest.raises(TlcliError, match=r"holds no tinynet backbone \(its layers: input_layer\S*, only_dense\)\. "
                                         r"Use a run trained with --model tinynet"):
        find_base(model, TINY)
    outer = keras.Sequential([bases[TINY.name]])
    assert find_base(outer, TINY) is bases[TINY.name]


@pytest.mark.parametrize("keras_name, row", [
    ("vgg16", "vgg16"), ("inception_v3", "inceptionv3"), ("efficientnetv2-b0", "efficientnetv2b0"),
    ("convnext_tiny", "convnexttiny"), ("MobileNetV3Small", "mobilenetv3small"),
])
def test_keras_names_of_the_applications_match_their_rows(keras_name, row):
    assert keras_model_name_matches(keras_name, get_backbone(row))
    assert not keras_model_name_matches(keras_name, get_backbone("resnet50"))
