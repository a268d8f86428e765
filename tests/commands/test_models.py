"""`tlcli models`: the backbone table as a user reads it, and as JSON."""

from __future__ import annotations

import json

import tiny_backbone
from helpers import runner
from tlcli.cli import app
from tlcli.models.backbones import BACKBONES


def test_models_json_lists_every_backbone_and_marks_the_classic_four(monkeypatch):
    monkeypatch.delitem(BACKBONES, tiny_backbone.NAME)  # the tests' own backbone: never a user's
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["vgg16", "resnet50", "inceptionv3", "xception", "efficientnetv2b0", "efficientnetv2s",
                          "convnexttiny", "mobilenetv3small", "mobilenetv3large"]
    assert [name for name, row in rows.items() if row["classic"]] == ["vgg16", "resnet50", "inceptionv3", "xception"]
    assert rows["convnexttiny"]["preprocessing"] == "torch" and rows["convnexttiny"]["preprocessing_in_backbone"]
    assert rows["mobilenetv3small"]["feature_size"] == 576 and rows["efficientnetv2s"]["default_size"] == 384
    assert rows["mobilenetv3small"]["weights_file"].endswith("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    assert rows["inceptionv3"]["min_size"] == 75 and rows["xception"]["default_size"] == 299
    assert rows["vgg16"]["max_size"] == 1024 and rows["xception"]["max_size"] == 1440
    assert rows["vgg16"]["preprocessing"] == "caffe" and rows["xception"]["preprocessing"] == "tf"
    assert rows["vgg16"]["explain_layer"] == "block5_conv3" and rows["inceptionv3"]["explain_layer"] == "mixed10"


def test_models_table_mentions_every_backbone():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert all(name in result.stdout for name in BACKBONES)
    assert "vgg16 *" in result.stdout and "mobilenetv3small *" not in result.stdout
    assert "Largest --image-size: vgg16 1024, resnet50 2016" in result.stdout
