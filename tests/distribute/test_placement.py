"""Where the work runs (`tlcli.distribute.placement`): this process's placement, in this process; two
replicas and multi-worker clusters, in real processes on this machine (loopback only: whole suite)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, read_features, read_history, runner
from tlcli.cli import app
from tlcli.distribute.placement import Placement, worker_run_dir
from tlcli.runs.names import BACKUP

TRAIN = tuple(map(str, TINY_TRAIN))

# Runs the tlcli command line with the CPU split into two logical devices, which must happen
# before TensorFlow initialises its devices: the only way to test MirroredStrategy without GPUs.
TWO_CPUS = (
    "import sys\n"
    "from tlcli.runtime import import_tensorflow\n"
    "tf = import_tensorflow()\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "from tlcli.cli import main\n"
    "sys.argv[0] = 'tlcli'\n"
    "main()\n"
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _workers_env(ports, index):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


def _start_workers(arguments, ports, **kwargs):
    command = [sys.executable, "-m", "tlcli", *arguments]
    return [
        subprocess.Popen(command, env=_workers_env(ports, index), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, **kwargs)
        for index in range(len(ports))
    ]


def _finish(processes, timeout=300):
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


@pytest.mark.subprocess  # two CPU devices exist only in a process that made them before TensorFlow started
def test_mirrored_on_two_cpu_devices_matches_the_default_strategy(colour_dataset, tmp_path):
    common = [*TRAIN, "--epochs", "4", "--learning-rate", "0.01", "--early-stopping", "0"]
    default = runner.invoke(app, ["train", str(colour_dataset), *common, "--batch-size", "8",
                                  "--out", str(tmp_path / "default")])
    assert default.exit_code == 0, default.output
    mirrored = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, "train", str(colour_dataset), *common, "--batch-size", "4",
         "--strategy", "mirrored", "--out", str(tmp_path / "mirrored")],
        capture_output=True, text=True, timeout=300,
    )
    assert mirrored.returncode == 0, mirrored.stderr
    config = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert config["distribution"]["strategy"] == "mirrored" and config["distribution"]["replicas"] == 2
    assert config["global_batch_size"] == 8
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("default", "mirrored"))
    assert two["val_loss"] == pytest.approx(one["val_loss"], abs=0.02)
    assert two["val_accuracy"] == pytest.approx(one["val_accuracy"], abs=0.1)


@pytest.mark.cluster
@pytest.mark.parametrize("route, options", [("end to end", ["--no-cache-features"]), ("solved (L-BFGS)", [])])
def test_two_workers_train_identical_weights_and_write_one_run(colour_dataset, tmp_path, route, options):
    # Solved: the chief alone solves, and every worker receives its weights and standardization.
    run_dir = tmp_path / "cluster-run"
    arguments = ["train", str(colour_dataset), *TRAIN, "--epochs", "2", "--batch-size", "4",
                 *options, "--strategy", "multi-worker", "--out", str(run_dir)]
    outputs = _finish(_start_workers(arguments, _free_ports(2), cwd=tmp_path))
    fingerprints = [line.split("│")[2].strip() for output in outputs for line in output.splitlines()
                    if "weights sha256" in line]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1], outputs
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["weights_sha256"].startswith(fingerprints[0])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["workers"] == 2 and config["route"] == route
    assert [path.name for path in tmp_path.iterdir()] == ["cluster-run"]
    # The other worker's scratch folder (named by a hash of --out) is gone once the run finished.
    scratch = _second_worker_folder(run_dir)
    assert scratch.name.startswith("tlcli-worker1-") and not scratch.exists()


def _second_worker_folder(run_dir):
    return worker_run_dir(run_dir, Placement(None, "multi-worker", (), 2, num_workers=2, worker_index=1, is_chief=False))


@pytest.mark.cluster
def test_two_workers_fine_tune_on_the_frozen_parts_cached_output_and_agree(tiny_run, tmp_path):
    # Each worker computes the cache for its share of the images and receives the others' rows.
    run_dir = tmp_path / "cluster-ft"
    arguments = ["finetune", str(tiny_run), "--stage", "block3:2:1e-4", "--augment", "none", "--batch-size", "4",
                 "--strategy", "multi-worker", "--out", str(run_dir)]
    outputs = _finish(_start_workers(arguments, _free_ports(2), cwd=tmp_path))
    fingerprints = [line.split("│")[2].strip() for output in outputs for line in output.splitlines()
                    if "weights sha256" in line]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1], outputs
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stage_rates"]["stage1-block3"]["route"].startswith("cached: cut at block2_pool")
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1, 2]


@pytest.mark.cluster
def test_a_killed_multi_worker_run_resumes(colour_dataset, tmp_path):
    run_dir = tmp_path / "cluster-run"
    arguments = ["train", str(colour_dataset), *TRAIN, "--epochs", "6", "--batch-size", "2",
                 "--no-cache-features", "--early-stopping", "0", "--strategy", "multi-worker",
                 "--out", str(run_dir)]
    processes = _start_workers(arguments, _free_ports(2))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        if (run_dir / "history.csv").exists() and len(read_history(run_dir)) >= 2:
            break
        time.sleep(0.05)
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert 2 <= len(read_history(run_dir)) < 6
    # Each worker backs up on its own, so a kill can stop one before its last write: as if it had,
    # the second worker's backup loses its latest epoch. Both resume from the one they share.
    metadata = _second_worker_folder(run_dir) / BACKUP / "train" / "checkpoint.json"
    held = json.loads(metadata.read_text())["held"]
    metadata.write_text(json.dumps({"held": held[:-1]}))
    outputs = _finish(_start_workers(arguments + ["--resume"], _free_ports(2)))
    assert [int(row["epoch"]) for row in read_history(run_dir)] == list(range(1, 7)), outputs
    fingerprints = {line.split("│")[2].strip() for output in outputs for line in output.splitlines()
                    if "weights sha256" in line}
    assert len(fingerprints) == 1, outputs
    assert not (run_dir / ".in-progress").exists()


@pytest.mark.parametrize(
    "arguments, environment, message",
    [
        (["--strategy", "tpu"], {}, "TPUs read only Cloud Storage"),
        (["--strategy", "multi-worker"], {"TF_CONFIG": ""}, "--strategy multi-worker needs TF_CONFIG"),
        (["--strategy", "multi-worker"], {"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'},
         "TF_CONFIG is not a valid cluster description"),
        (["--strategy", "multi-worker"], {"TF_CONFIG": "{not json"}, "TF_CONFIG is not a valid cluster description"),
        (["--precision", "mixed_float16"], {}, "--precision mixed_float16 needs a GPU"),
        (["--strategy", "gpus"], {}, "--strategy 'gpus' is not one of"),
        (["--strategy", "mirrored", "--tpu", "local"], {}, "--tpu local is for --strategy tpu"),
    ],
)
def test_bad_placements_are_one_line_errors(colour_dataset, tmp_path, monkeypatch, arguments, environment, message):
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["train", str(colour_dataset), *TRAIN, *arguments, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.subprocess  # the exit code and stderr of a real process that looked for a TPU
def test_tpu_without_a_tpu_fails_fast_and_says_so(colour_dataset, tmp_path):
    # On a TPU VM (--tpu local) the host reads local folders, so the data passes and the TPU is sought.
    result = subprocess.run(
        [sys.executable, "-m", "tlcli", "train", str(colour_dataset), *TRAIN, "--tpu", "local",
         "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: No TPU available") and "--strategy auto" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_remote_tpu_fed_from_a_bucket_gets_past_the_data_check_to_the_tpu(tmp_path):
    # A remote TPU is looked up through the Cloud TPU API, which cannot be reached here: a bucket passes
    # the data check, the run stops only where a real TPU is needed, before any data is read.
    result = runner.invoke(app, ["train", "gs://tlcli-example/data", *TRAIN, "--tpu", "my-tpu", "--out", str(tmp_path / "x")],
                           terminal_width=400)  # a line is not wrapped
    assert result.exit_code == 2 and result.output.startswith("Error: No TPU available"), result.output
    assert "--strategy auto" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def _two_cpus(*arguments):
    return subprocess.run([sys.executable, "-c", TWO_CPUS, *map(str, arguments)],
                          capture_output=True, text=True, timeout=300)


EXTRACT = (*TRAIN[:-1], "--batch-size", "4")  # without --quiet


@pytest.fixture(scope="module")
def default_features(colour_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract") / "default.npz"
    result = runner.invoke(app, ["extract", str(colour_dataset), *EXTRACT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return read_features(out)


@pytest.mark.subprocess  # two CPU devices: a process that made them before TensorFlow started
def test_mirrored_extraction_shares_batches_and_gives_the_same_features(colour_dataset, default_features, tmp_path):
    result = _two_cpus("extract", colour_dataset, *EXTRACT, "--strategy", "mirrored", "--out", tmp_path / "f.npz")
    assert result.returncode == 0, result.stderr
    assert "Strategy mirrored: 2 replica(s)" in result.stderr and "4 per replica, 8 global" in result.stderr
    mirrored = read_features(tmp_path / "f.npz")
    assert list(mirrored["paths"]) == list(default_features["paths"])
    assert abs(mirrored["features"] - default_features["features"]).max() < 1e-4
    assert json.loads(mirrored["distribution"].item())["replicas"] == 2


@pytest.mark.cluster
def test_two_workers_extract_every_image_once_into_one_file(colour_dataset, default_features, tmp_path):
    out = tmp_path / "features.npz"
    outputs = _finish(_start_workers(["extract", str(colour_dataset), *EXTRACT, "--strategy", "multi-worker",
                                      "--out", str(out)], _free_ports(2), cwd=tmp_path))
    assert [path.name for path in tmp_path.iterdir()] == ["features.npz"], outputs
    assert "the chief writes" in outputs[1]
    extracted = read_features(out)
    assert list(extracted["paths"]) == list(default_features["paths"])
    assert abs(extracted["features"] - default_features["features"]).max() < 1e-4
    assert json.loads(extracted["distribution"].item())["workers"] == 2


@pytest.mark.subprocess  # two CPU devices: a process that made them before TensorFlow started
def test_mirrored_evaluation_matches_the_default_strategy(tiny_run, colour_dataset, tmp_path):
    default = runner.invoke(app, ["evaluate", str(tiny_run), str(colour_dataset), "--out", str(tmp_path / "one")])
    assert default.exit_code == 0, default.output
    mirrored = _two_cpus("evaluate", tiny_run, colour_dataset, "--batch-size", "2", "--strategy", "mirrored",
                         "--out", tmp_path / "two")
    assert mirrored.returncode == 0, mirrored.stderr
    one, two = (json.loads((tmp_path / name / "evaluation.json").read_text()) for name in ("one", "two"))
    assert two["distribution"]["strategy"] == "mirrored" and two["distribution"]["replicas"] == 2
    assert two["samples"] == one["samples"] and two["confusion_matrix"] == one["confusion_matrix"]
    assert two["log_loss"] == pytest.approx(one["log_loss"], abs=1e-5)


@pytest.mark.subprocess  # two CPU devices: a process that made them before TensorFlow started
def test_mirrored_evaluation_with_tta_matches_the_default_strategy(tiny_run, colour_dataset, tmp_path):
    """Each replica classifies its share's views in one pass; the per-view rows are gathered in file order."""
    default = runner.invoke(app, ["evaluate", str(tiny_run), str(colour_dataset), "--tta-views", "crops",
                                  "--out", str(tmp_path / "one")])
    assert default.exit_code == 0, default.output
    mirrored = _two_cpus("evaluate", tiny_run, colour_dataset, "--tta-views", "crops", "--batch-size", "2",
                         "--strategy", "mirrored", "--out", tmp_path / "two")
    assert mirrored.returncode == 0, mirrored.stderr
    assert "Test-time augmentation: on (crops, 10 views" in mirrored.stderr
    one, two = (json.loads((tmp_path / name / "evaluation.json").read_text()) for name in ("one", "two"))
    assert two["distribution"]["replicas"] == 2 and two["confusion_matrix"] == one["confusion_matrix"]
    assert two["log_loss"] == pytest.approx(one["log_loss"], abs=1e-5)
    assert two["tta"]["accuracy_per_view"] == one["tta"]["accuracy_per_view"]
    assert two["tta"]["single_view"]["log_loss"] == pytest.approx(one["tta"]["single_view"]["log_loss"], abs=1e-5)


def test_bfloat16_evaluation_computes_in_bfloat16_and_agrees(tiny_run, colour_dataset, tmp_path):
    reports = {}
    for precision in ("float32", "mixed_bfloat16"):
        result = runner.invoke(app, ["evaluate", str(tiny_run), str(colour_dataset), "--precision", precision,
                                     "--out", str(tmp_path / precision)])
        assert result.exit_code == 0, result.output
        reports[precision] = json.loads((tmp_path / precision / "evaluation.json").read_text())
    float32, bfloat16 = reports["float32"], reports["mixed_bfloat16"]
    assert bfloat16["distribution"]["precision"] == "mixed_bfloat16"
    # bfloat16 keeps 8 bits of mantissa: the losses differ, but only a little.
    assert bfloat16["log_loss"] != float32["log_loss"]
    assert bfloat16["log_loss"] == pytest.approx(float32["log_loss"], rel=0.1, abs=0.02)
    assert bfloat16["accuracy"] == pytest.approx(float32["accuracy"], abs=0.1)


def test_finetuning_in_bfloat16_computes_the_loaded_model_in_bfloat16(tiny_run, tmp_path):
    result = runner.invoke(app, ["finetune", str(tiny_run), "--stage", "block3:1:0.0001", "--precision",
                                 "mixed_bfloat16", "--quiet", "--out", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    from tlcli.models.saved import load_run_model

    model, _ = load_run_model(tmp_path / "ft")
    base = model.get_layer("tinynet")
    assert base.get_layer("block3_conv2").compute_dtype == "bfloat16"
    assert model.get_layer("head").get_layer("predictions").compute_dtype == "float32"
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["distribution"]["precision"] == "mixed_bfloat16"


@pytest.mark.cluster
def test_two_workers_evaluate_together_and_the_chief_writes_the_reports(tiny_run, colour_dataset, tmp_path):
    default = runner.invoke(app, ["evaluate", str(tiny_run), str(colour_dataset), "--out", str(tmp_path / "one")])
    assert default.exit_code == 0, default.output
    processes = _start_workers(["evaluate", str(tiny_run), str(colour_dataset), "--batch-size", "2",
                                "--strategy", "multi-worker", "--fail-under", "accuracy=0",
                                "--out", str(tmp_path / "two")], _free_ports(2))
    outputs = _finish(processes)
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert "the chief writes the reports" in outputs[1] and "Per class" not in outputs[1]
    one, two = (json.loads((tmp_path / name / "evaluation.json").read_text()) for name in ("one", "two"))
    assert two["distribution"]["workers"] == 2
    assert two["samples"] == one["samples"] and two["confusion_matrix"] == one["confusion_matrix"]


@pytest.mark.parametrize("command", ["extract", "evaluate"])
def test_extract_and_evaluate_refuse_a_remote_tpu_with_local_data(command, tiny_run, colour_dataset, tmp_path):
    out = tmp_path / "out.npz" if command == "extract" else tmp_path / "reports"
    head = ["extract", str(colour_dataset), *EXTRACT] if command == "extract" else ["evaluate", str(tiny_run), str(colour_dataset)]
    result = runner.invoke(app, [*head, "--strategy", "tpu", "--tpu", "my-tpu", "--out", str(out)])
    assert result.exit_code == 2 and "TPUs read only Cloud Storage" in result.output and "--tpu local" in result.output
    assert not out.exists()


def _consecutive_free_ports():
    """A port p with p + 1 free too (Slurm workers on one node take consecutive ports)."""
    for _ in range(50):
        (port,) = _free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    pytest.skip("no two consecutive free ports")


@pytest.mark.cluster
def test_two_slurm_tasks_extract_together_without_tf_config(colour_dataset, default_features, tmp_path):
    # What `srun --ntasks=2` sets on one node; there is no Slurm here, and no scontrol is needed.
    port = _consecutive_free_ports()
    environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    slurm = {"SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_TASKS_PER_NODE": "2", "TLCLI_PORT_BASE": str(port)}
    out = tmp_path / "features.npz"
    command = [sys.executable, "-m", "tlcli", "extract", str(colour_dataset), *EXTRACT, "--strategy", "multi-worker",
               "--out", str(out)]
    processes = [subprocess.Popen(command, env={**environment, **slurm, "SLURM_PROCID": str(rank)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = _finish(processes)
    assert [process.returncode for process in processes] == [0, 0], outputs
    extracted = read_features(out)
    assert json.loads(extracted["distribution"].item())["workers"] == 2
    assert abs(extracted["features"] - default_features["features"]).max() < 1e-4


@pytest.mark.subprocess  # two CPU devices: a process that made them before TensorFlow started
def test_mirrored_prediction_gives_the_same_rows(tiny_run, colour_dataset):
    arguments = ["predict", tiny_run, colour_dataset / "test", "--format", "csv", "--batch-size", "2"]
    default = runner.invoke(app, list(map(str, arguments)))
    assert default.exit_code == 0, default.output
    mirrored = _two_cpus(*arguments, "--strategy", "mirrored")
    assert mirrored.returncode == 0, mirrored.stderr
    assert "Strategy mirrored: 2 replica(s)" in mirrored.stderr
    header, *one = csv.reader(default.stdout.splitlines())
    _, *two = csv.reader(mirrored.stdout.splitlines())
    assert len(one) == 12 and [row[:2] for row in one] == [row[:2] for row in two]  # paths and predictions
    probabilities = [header.index(name) for name in header if name.startswith("probability")]
    for first, second in zip(one, two):
        assert [float(first[i]) for i in probabilities] == pytest.approx([float(second[i]) for i in probabilities], abs=1e-5)


# --- this process's placement, in-process (one CPU device here) -----------------------------------


def test_auto_on_a_machine_without_accelerators_is_the_default_strategy_on_the_cpu():
    import tensorflow as tf

    from tlcli.distribute.placement import DistributeConfig, place

    placement = place(DistributeConfig())
    assert placement.strategy is tf.distribute.get_strategy()
    assert placement.describe() == {"strategy": "default", "devices": ["/device:CPU:0"], "replicas": 1, "workers": 1,
                                    "worker_index": 0, "precision": "float32"}
    assert placement.global_batch(16) == 16 and placement.is_chief
    one = place(DistributeConfig("one-device"))
    assert (one.name, one.devices, one.replicas) == ("one-device", ("/device:CPU:0",), 1)
    assert one.strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)
    mirrored = place(DistributeConfig("mirrored"))  # every device there is: here, the one CPU
    assert (mirrored.name, mirrored.devices, mirrored.replicas) == ("mirrored", ("/device:CPU:0",), 1)
    assert isinstance(mirrored.strategy, tf.distribute.MirroredStrategy)


def test_a_precision_is_the_policy_of_every_model_built_after_placing():
    import keras

    from tlcli.distribute.placement import DistributeConfig, place

    try:
        placement = place(DistributeConfig(precision="mixed_bfloat16"))
        dense = keras.layers.Dense(2)
        assert placement.precision == "mixed_bfloat16"
        assert (dense.compute_dtype, dense.variable_dtype) == ("bfloat16", "float32")
    finally:
        place(DistributeConfig())
    assert keras.layers.Dense(2).compute_dtype == "float32"  # the next command's placement sets it back


def batches_of_indices(count: int):
    """make_dataset for `distribute` and `map_batches`: the indices 0..count-1 as images, labels and indices."""
    import tensorflow as tf

    def make_dataset(shard_count, shard_index, batch_size, repeat_batches=None):
        indices = tf.data.Dataset.range(count).shard(shard_count, shard_index)
        dataset = indices.map(lambda index: (tf.cast(index, tf.float32)[None], index % 3, index)).batch(batch_size)
        return dataset.repeat().take(repeat_batches) if repeat_batches else dataset

    return make_dataset


def test_one_device_reads_every_example_once_per_epoch_or_repeats_for_a_fit_that_counts_steps():
    from tlcli.distribute.placement import DistributeConfig, distribute, place

    placement = place(DistributeConfig())
    dataset, steps = distribute(placement, batches_of_indices(10), num_examples=10, per_replica_batch=4)
    assert steps == 3 and [list(batch[2].numpy()) for batch in dataset] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    endless, steps = distribute(placement, batches_of_indices(10), num_examples=10, per_replica_batch=4, endless=True)
    assert steps == 3 and len(list(endless)) == 3  # take(steps) of the repeated batches: one epoch's worth


@pytest.mark.parametrize("placed", [False, True], ids=["no placement", "default strategy"])
def test_map_batches_gives_every_image_once_in_file_order(placed):
    import numpy as np

    from tlcli.distribute.placement import DistributeConfig, map_batches, place

    placement = place(DistributeConfig()) if placed else None
    results = list(map_batches(placement, lambda images: images * 2, batches_of_indices(7), per_replica_batch=3))
    outputs, labels, indices = (np.concatenate(part) for part in zip(*results))
    assert list(indices) == list(range(7)) and list(labels) == [index % 3 for index in range(7)]
    np.testing.assert_array_equal(outputs[:, 0], 2 * np.arange(7))


def test_only_the_chief_writes_the_run_and_every_other_worker_keeps_its_own_stable_scratch(tmp_path, monkeypatch):
    import hashlib
    import tempfile

    from tlcli.distribute.placement import Placement, broadcast_from_chief, worker_run_dir

    def member(index):
        return Placement(None, "multi-worker", (), 2, num_workers=3, worker_index=index, is_chief=index == 0)

    run = tmp_path / "run"
    assert worker_run_dir(run, member(0)) == run
    key = hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:12]
    scratch = worker_run_dir(run, member(2))
    assert scratch == Path(tempfile.gettempdir()) / f"tlcli-worker2-{key}"
    monkeypatch.chdir(tmp_path)  # --out spelt another way names the same scratch: --resume finds it
    assert worker_run_dir(Path("run"), member(2)) == scratch and worker_run_dir(run, member(1)) != scratch
    alone = Placement(None, "default", ("/device:CPU:0",), 1)
    arrays = [[1.0, 2.0], [[3.0]]]
    assert broadcast_from_chief(alone, arrays) == arrays  # nothing to share on one machine
