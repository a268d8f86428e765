"""The command line as a user meets it: speed, messages, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from tlcli import __version__
from tlcli.cli import app

runner = CliRunner()


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
    for command in ("models", "inspect", "augment", "train", "finetune", "tune", "evaluate", "predict",
                    "export", "extract"):
        help_text = _tlcli(command, "--help")
        assert help_text.returncode == 0 and "Usage: tlcli " + command in help_text.stdout


def test_models_json_lists_the_four_backbones():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["vgg16", "resnet50", "inceptionv3", "xception"]
    assert rows["inceptionv3"]["min_size"] == 75 and rows["xception"]["default_size"] == 299
    assert rows["vgg16"]["max_size"] == 1024 and rows["xception"]["max_size"] == 1440
    assert rows["vgg16"]["preprocessing"] == "caffe" and rows["xception"]["preprocessing"] == "tf"


def test_models_table_mentions_every_backbone():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert all(name in result.stdout for name in ("vgg16", "resnet50", "inceptionv3", "xception"))
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
