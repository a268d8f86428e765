"""The command line as a user meets it: speed, messages, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import MARKUP_NAMES, runner, write_class_folders
from tlcli import __version__
from tlcli.cli import app


def _tlcli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tlcli", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def test_help_does_not_import_tensorflow():
    """What keeps `tlcli --help` fast (bench/cli_latency.py times it): no TensorFlow import."""
    code = (
        "import sys; sys.argv = ['tlcli', '--help']\n"
        "from tlcli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TF', 'tensorflow' in sys.modules, 'KERAS', 'keras' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "inspect" in result.stdout and "train" in result.stdout and "export" in result.stdout
    assert result.stderr.split() == ["TF", "False", "KERAS", "False"]


def test_whole_process_help_and_version():
    result = _tlcli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"tlcli {__version__}"
    for command in ("models", "inspect", "pack", "augment", "train", "finetune", "tune", "evaluate", "calibrate", "explain",
                    "predict", "export", "extract"):
        help_text = _tlcli(command, "--help")
        assert help_text.returncode == 0 and "Usage: tlcli " + command in help_text.stdout


def test_models_json_lists_every_backbone_and_marks_the_classic_four():
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
    from tlcli.models.backbones import BACKBONES

    assert all(name in result.stdout for name in BACKBONES)
    assert "vgg16 *" in result.stdout and "mobilenetv3small *" not in result.stdout
    assert "Largest --image-size: vgg16 1024, resnet50 2016" in result.stdout


def test_inspect_json_reports_the_messy_folder(messy_dataset):
    result = runner.invoke(app, ["inspect", str(messy_dataset), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["classes"] == ["cat", "dog"]
    assert report["counts"]["train"] == {"cat": 11, "dog": 4}
    assert {p["path"].rsplit("/", 1)[1] for p in report["problems"]} == {
        "corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt"}
    assert {"CMYK", "RGBA", "L", "I;16", "P"} <= set(report["modes"])
    assert report["clean"] is False


def test_inspect_strict_exits_non_zero_only_when_problems_exist(messy_dataset, split_dataset):
    assert runner.invoke(app, ["inspect", str(messy_dataset), "--strict"]).exit_code == 1
    clean = runner.invoke(app, ["inspect", str(split_dataset), "--strict"])
    assert clean.exit_code == 0 and "No problems found" in clean.stdout


def test_inspect_reports_huge_images_without_pillows_raw_warning(flat_dataset):
    from PIL import Image

    Image.new("1", (10000, 10000)).save(flat_dataset / "cat" / "huge.png")
    table = _tlcli("inspect", str(flat_dataset), env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0
    assert "DecompressionBomb" not in table.stderr + table.stdout
    assert f"Huge images: 1 over 89.5 megapixels, the largest {flat_dataset / 'cat' / 'huge.png'} (10000x10000)." in (
        table.stdout)
    report = json.loads(_tlcli("inspect", str(flat_dataset), "--json").stdout)
    assert report["huge_images"]["count"] == 1 and report["huge_images"]["largest"]["width"] == 10000


def test_inspect_prints_names_literally_not_as_markup(flat_dataset):
    (flat_dataset / "cat" / "[bold]notes.txt").write_text("not an image")
    os.symlink("..", flat_dataset / "dog" / "[red]up")
    (flat_dataset / "[blue]bird").mkdir()
    table = _tlcli("inspect", str(flat_dataset), env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0
    for name in ("[bold]notes.txt", "[red]up", "[blue]bird"):
        assert name in table.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    result = _tlcli("inspect", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Dataset folder")
    assert "Traceback" not in result.stderr
    debug = _tlcli("--debug", "inspect", str(tmp_path / "missing"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_out_of_range_split_is_a_one_line_error(flat_dataset):
    result = runner.invoke(app, ["inspect", str(flat_dataset), "--val-split", "1.5"])
    assert result.exit_code == 2 and "--val-split 1.5 is out of range" in result.output


def test_tensorflow_start_up_noise_stays_off_stderr():
    code = "from tlcli.runtime import import_tensorflow; tf = import_tensorflow(); print(tf.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0 and result.stdout.startswith("2.")
    assert result.stderr == ""


def _one_line_error(result) -> str:
    """The single `Error: ...` line of a failed command (no traceback, nothing else)."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("setting, message", [
    ('epochs = "two"', '--epochs "two" is not a whole number. In the config file, write e.g. epochs = 10.'),
    ('learning_rate = "abc"', '--learning-rate "abc" is not a number. In the config file, write e.g. learning_rate = 0.001.'),
    ("batch_size = 1.5", "--batch-size 1.5 is not a whole number. In the config file, write e.g. batch_size = 32."),
    ('seed = "x"', '--seed "x" is not a whole number. In the config file, write e.g. seed = 0.'),
    ("model = 7", '--model 7 is not a name. In the config file, write e.g. model = "resnet50".'),
    ("weights = 3", '--weights 3 is not a name. In the config file, write e.g. weights = "imagenet".'),
    ("dropout = [0.1]", "--dropout [0.1] is not a number. In the config file, write e.g. dropout = 0.0."),
    ("cache_features = 1", "--cache-features 1 is not true or false."),
])
def test_wrong_typed_train_settings_in_a_config_file_are_one_line_errors(flat_dataset, tmp_path, setting, message):
    settings = tmp_path / "settings.toml"
    settings.write_text(setting + "\n")
    result = runner.invoke(app, ["train", str(flat_dataset), "--config", str(settings), "--out", str(tmp_path / "run")])
    assert message in _one_line_error(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, setting, message", [
    ("finetune", 'stages = "block5:3:1e-4"',
     '--stage "block5:3:1e-4" is not a list. In the config file, write e.g. stages = ["block5:3:1e-5"].'),
    ("finetune", 'train_batch_norm = "yes"', '--train-bn "yes" is not true or false.'),
    ("finetune", 'learning_rate = "small"', '--learning-rate "small" is not a number.'),
    ("tune", "[tune]\ntrials = 2.5", "--trials 2.5 is not a whole number. In the config file, write e.g. trials = 10."),
    ("tune", '[tune]\nobjective = ["val_loss"]', '--objective ["val_loss"] is not a name.'),
    ("tune", 'early_stopping = "3"', '--early-stopping "3" is not a whole number.'),
])
def test_wrong_typed_finetune_and_tune_settings_are_one_line_errors(flat_dataset, tmp_path, command, setting, message):
    settings = tmp_path / "settings.toml"
    settings.write_text(setting + "\n")
    target = [str(tmp_path / "no-run")] if command == "finetune" else [str(flat_dataset), "--model", "vgg16"]
    result = runner.invoke(app, [command, *target, "--config", str(settings), "--out", str(tmp_path / "out")])
    assert message in _one_line_error(result)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, text, message", [
    ("train", "[trian]\nepochs = 2\n",
     "Unknown table [trian] in --config {config}. Known tables: [augmentation]; other settings go at the top"),
    ("train", 'epochs = 2\n[augmentation]\nflip = "none"\n[spcae]\ndropout = [0.1]\n',
     "Unknown table [spcae] in --config {config}. Known tables: [augmentation];"),
    ("augment", '[augmentaton]\nflip = "none"\n', "Unknown table [augmentaton] in --config {config}."),
    ("finetune", '[augmentation]\nflip = "none"\n', "Unknown table [augmentation] in --config {config}. Known tables: [finetune];"),
    ("finetune", "[finetune]\nbatch_size = 8\n[finetune.stage]\nepochs = 1\n",
     "Unknown table [stage] in --config {config} [finetune]. It holds settings (key = value), not tables."),
    ("tune", "[spcae]\nlearning_rate = [0.1]\n", "Unknown table [spcae] in --config {config}. Known tables: [tune], [space];"),
    ("tune", '[tune]\nsearch = "grid"\n[tune.grid]\ntrials = 1\n', "Unknown table [grid] in --config {config} [tune]."),
])
def test_a_table_the_command_does_not_read_is_a_one_line_error(flat_dataset, tmp_path, command, text, message):
    config, out = tmp_path / "settings.toml", tmp_path / "out"
    config.write_text(text)
    target = {"train": [flat_dataset], "augment": [flat_dataset], "finetune": [tmp_path / "no-run"],
              "tune": [flat_dataset, "--model", "vgg16"]}[command]
    result = runner.invoke(app, [command, *map(str, target), "--config", str(config), "--out", str(out)])
    assert message.format(config=config) in _one_line_error(result)
    assert not out.exists()


def test_class_names_and_paths_print_as_written(tmp_path, monkeypatch):
    """Rich reads `[...]` as markup and `:x:` as an emoji code; user input must print as typed."""
    monkeypatch.chdir(tmp_path)
    data = write_class_folders(Path("data [u]a:x:b"), dict.fromkeys(MARKUP_NAMES, 3))
    (data / "a:x:b" / "[bold]notes.txt").write_text("not an image")
    result = runner.invoke(app, ["inspect", str(data)])
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in MARKUP_NAMES)
    assert "data [u]a:x:b/a:x:b/[bold]notes.txt" in result.stdout and "❌" not in result.stdout

    missing = runner.invoke(app, ["inspect", "missing [bold]a:x:b"])
    assert _one_line_error(missing).startswith("Error: Dataset folder missing [bold]a:x:b does not exist.")


def test_messages_wrap_between_words_at_80_columns_and_stay_whole_in_a_pipe():
    """A terminal breaks an unwrapped line mid-word; a log file or pipe wants one line per message."""
    from tlcli.console import stderr_console

    message = ("Strategy default: 1 replica(s) on /device:CPU:0; batch 32 per replica, 32 global; float32. "
               "Augmentation is on (rotation 0.08, flip horizontal): the backbone sees new pixels every epoch.")
    terminal = stderr_console(file=io.StringIO(), width=80, force_terminal=True)
    terminal.print(message)
    lines = terminal.file.getvalue().splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert [word for line in lines for word in line.split()] == message.split()
    pipe = stderr_console(file=io.StringIO(), width=80, force_terminal=False)
    pipe.print(message)
    assert pipe.file.getvalue() == message + "\n"
