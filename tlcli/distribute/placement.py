"""Where training runs: CPU, GPUs, a TPU or several machines, through `tf.distribute`.

The only module that touches `tf.distribute`. It chooses the strategy, distributes input
pipelines (each worker reads its own shard of the files, so every image is on one worker per
epoch), sets the precision policy, and carries a narrow compatibility fix that Keras 3 needs
for `MultiWorkerMirroredStrategy`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.distribute.cluster import cluster_config
from tlcli.errors import TlcliError
from tlcli.runtime import import_keras, import_tensorflow
from tlcli.storage import is_url, location

STRATEGIES = ("auto", "default", "one-device", "mirrored", "multi-worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class DistributeConfig:
    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "float32"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise TlcliError(f"--strategy {self.strategy!r} is not one of: {', '.join(STRATEGIES)}.")
        if self.precision not in PRECISIONS:
            raise TlcliError(f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}.")
        if self.tpu and self.strategy not in ("auto", "tpu"):
            raise TlcliError(f"--tpu {self.tpu} is for --strategy tpu (or auto), not {self.strategy}. Drop one of them.")


@dataclass(frozen=True, kw_only=True)
class DistributionFields:
    """Where a workflow runs, as its config holds it (--strategy, --tpu, --precision)."""

    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "float32"

    def distribution(self) -> DistributeConfig:
        return DistributeConfig(self.strategy, self.tpu, self.precision)


@dataclass
class Placement:
    """The chosen strategy and this process's part in it."""

    strategy: object
    name: str
    devices: tuple[str, ...]
    replicas: int
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True
    precision: str = "float32"

    def global_batch(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def describe(self) -> dict:
        return {
            "strategy": self.name,
            "devices": list(self.devices),
            "replicas": self.replicas,
            "workers": self.num_workers,
            "worker_index": self.worker_index,
            "precision": self.precision,
        }


def place(config: DistributeConfig, data: Path | str | None = None) -> Placement:
    """Create the strategy (first thing in a run: multi-worker collectives need it so)."""
    uses_tpu = config.strategy == "tpu" or (config.strategy == "auto" and config.tpu)
    if uses_tpu and config.tpu != "local":
        # A remote TPU's host reads only Cloud Storage; on a TPU VM (--tpu local) this
        # machine is the host and reads local folders.
        if data is not None and not (is_url(data) and location(data).scheme == "gs"):
            raise TlcliError(
                f"TPUs read only Cloud Storage, so {data} cannot be used with --strategy tpu on a remote TPU. "
                "On a TPU VM use --tpu local; otherwise pack the dataset into a bucket (tlcli pack DATA --out "
                "gs://BUCKET/PACK) and pass that URL."
            )
    tf = import_tensorflow()
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # do not grab all GPU memory
    name = config.strategy
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "tpu" if config.tpu else "mirrored" if len(gpus) > 1 else "one-device" if gpus else "default"

    if name == "tpu":
        placement = _tpu(tf, config.tpu)
    elif name == "multi-worker":
        placement = _multi_worker(tf)
    elif name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        placement = Placement(strategy, name, tuple(d.name for d in devices), strategy.num_replicas_in_sync)
    elif name == "one-device":
        device = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name
        placement = Placement(tf.distribute.OneDeviceStrategy(device), name, (device,), 1)
    else:
        strategy = tf.distribute.get_strategy()
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU")[:1] or tf.config.list_logical_devices("CPU")[:1])
        placement = Placement(strategy, "default", devices, 1)
    placement.precision = _set_precision(config.precision, tf, placement)
    return placement


def _tpu(tf, tpu: str | None) -> Placement:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local" if tpu == "local" else (tpu or ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    # A TPU named by --tpu NAME is looked up through the Cloud TPU API, from the VM's metadata server:
    # off Google Cloud that lookup fails with an OSError (urllib's URLError).
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TlcliError(
            f"No TPU available ({reason}). On a TPU VM use --tpu local, elsewhere --tpu NAME; "
            "without a TPU use --strategy auto."
        ) from None
    devices = tuple(device.name for device in tf.config.list_logical_devices("TPU"))
    return Placement(strategy, "tpu", devices, strategy.num_replicas_in_sync)


def _multi_worker(tf) -> Placement:
    document = cluster_config()
    # MultiWorkerMirroredStrategy reads its cluster from TF_CONFIG (derived from Slurm or not).
    os.environ["TF_CONFIG"] = json.dumps(document)
    patch_keras_for_multi_worker()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task_type, task_index = document["task"]["type"], int(document["task"]["index"])
    has_chief = "chief" in document["cluster"]
    workers = sum(len(document["cluster"].get(kind, [])) for kind in ("chief", "worker"))
    index = task_index + (1 if has_chief and task_type == "worker" else 0)
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_index == 0)
    devices = tuple(d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")[:1])
    return Placement(strategy, "multi-worker", devices, strategy.num_replicas_in_sync, workers, index, is_chief)


def _set_precision(precision: str, tf, placement: Placement) -> str:
    keras = import_keras()
    if precision == "mixed_float16" and not tf.config.list_logical_devices("GPU"):
        raise TlcliError(
            "--precision mixed_float16 needs a GPU: on CPU it is slower and less accurate. "
            "Use --precision mixed_bfloat16 or float32."
        )
    keras.mixed_precision.set_global_policy(precision)
    return precision


def worker_run_dir(run_dir: Path, placement: Placement) -> Path:
    """Only the chief writes the run directory; other workers use a stable scratch folder
    (stable so that --resume finds their state), removed when the run finishes."""
    if placement.is_chief:
        return run_dir
    key = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tlcli-worker{placement.worker_index}-{key}"


def distribute(placement: Placement, make_dataset, num_examples: int, per_replica_batch: int, endless: bool = False):
    """(dataset or distributed dataset, steps per epoch) for `fit`.

    `make_dataset(shard_count, shard_index, batch_size, repeat_batches)` builds one input
    pipeline. On one device it is the whole dataset, one epoch per pass (`repeat_batches` 0);
    otherwise each worker builds its own shard, batched per replica. Across workers every worker
    must run the same number of steps (or the collectives wait for ever), so an epoch is the
    whole number of global batches and each shard repeats, epoch after epoch, cut to that many.
    `endless` repeats epoch after epoch everywhere, for a fit that counts its own steps.
    """
    tf = import_tensorflow()
    if placement.replicas == 1 and placement.num_workers == 1:
        steps = max(1, -(-num_examples // per_replica_batch))
        return make_dataset(1, 0, per_replica_batch, steps if endless else 0), steps
    global_batch = placement.global_batch(per_replica_batch)
    if placement.num_workers > 1:
        steps = max(1, num_examples // global_batch)
    else:
        steps = max(1, -(-num_examples // global_batch))

    def per_worker(context):
        replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        repeat_batches = steps * replicas_per_pipeline if placement.num_workers > 1 or endless else 0
        return make_dataset(context.num_input_pipelines, context.input_pipeline_id,
                            context.get_per_replica_batch_size(global_batch), repeat_batches)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return placement.strategy.distribute_datasets_from_function(per_worker, options), steps


def map_batches(placement: Placement | None, function, make_dataset, per_replica_batch: int):
    """Run `function` over the images of every batch, spread over the replicas and workers.

    `make_dataset(shard_count, shard_index, batch_size)` builds batches of (images, labels,
    indices). Yields (outputs, labels, indices) as NumPy arrays, every image exactly once; under
    several workers each worker reads its own shard and every worker receives all results.
    Without a placement (or with one device) it is a plain loop.
    """
    tf = import_tensorflow()
    if placement is None or (placement.replicas == 1 and placement.num_workers == 1):
        for images, labels, indices in make_dataset(1, 0, per_replica_batch):
            yield np.asarray(function(images)), labels.numpy(), indices.numpy()
        return
    strategy = placement.strategy
    global_batch = placement.global_batch(per_replica_batch)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(context.num_input_pipelines, context.input_pipeline_id,
                                     context.get_per_replica_batch_size(global_batch))
    )

    @tf.function
    def step(batch):
        per_replica = strategy.run(lambda images, labels, indices: (function(images), labels, indices), args=batch)
        # Gathered one tensor at a time: `gather` on the tuple kept only the first replica's
        # rows (TF 2.21, MirroredStrategy). A worker whose shard has run out contributes an
        # empty batch, which the collectives accept.
        return tuple(strategy.gather(value, axis=0) for value in per_replica)

    for batch in dataset:
        outputs, labels, indices = (value.numpy() for value in step(batch))
        order = np.argsort(indices, kind="stable")  # replicas' rows interleave; keep file order
        yield outputs[order], labels[order], indices[order]


def patch_keras_for_multi_worker() -> None:
    """Work around Keras 3's `fit` under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    open; tensorflow/tensorflow#72388).

    1. `_maybe_symbolic_build` takes one batch to build the model symbolically and "reduces"
       it with `strategy.reduce`, which multi-worker collectives refuse for a PerReplica batch
       ("Attempt to convert a value (PerReplica ...) with an unsupported type"). The batch only
       supplies shapes: this worker's first local value does that.
    2. `reduce_per_replica` averages metric results over axis 0, which scalars do not have
       ("Invalid reduction dimension 0 for input with 0 dimensions"): reduce them whole.

    Applied once, only to the Keras versions known to need it and only if the patched names
    still exist, so a Keras that fixes or reshapes this code is left alone.
    """
    keras = import_keras()
    tf = import_tensorflow()
    from keras.src.backend.tensorflow import trainer as tf_trainer

    major, minor = (int(part) for part in keras.__version__.split(".")[:2])
    needs_patch = major == 3 and minor <= 15
    names_exist = hasattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build") and hasattr(
        tf_trainer, "reduce_per_replica"
    )
    if not (needs_patch and names_exist) or getattr(tf_trainer, "_tlcli_patched", False):
        return

    def first_local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return value.values[0]
        return value

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(first_local, next(batches))
                break
            return original_build(self, data_batch=data_batch)
        return original_build(self, iterator=iterator, data_batch=data_batch)

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
            def reduce(value):
                if first_local(value).shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original_reduce(value, strategy, reduction)

            return tf.nest.map_structure(reduce, values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._tlcli_patched = True


def broadcast_from_chief(placement: Placement, arrays):
    """The chief's `arrays` on every worker; the arrays themselves on a single machine.

    A sum over all replicas to which only the first replica, on the chief, adds anything.
    Every worker must call it, with arrays of the same shapes.
    """
    if placement.num_workers == 1:
        return list(arrays)
    tf = import_tensorflow()
    strategy = placement.strategy

    def first_replica_only(value):
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, value, tf.zeros_like(value))

    shared = []
    for array in arrays:
        mine = np.asarray(array, np.float32) if placement.is_chief else np.zeros(np.shape(array), np.float32)
        total = strategy.reduce("SUM", strategy.run(first_replica_only, args=(tf.constant(mine),)), axis=None)
        shared.append(total.numpy())
    return shared


def latest_held_by_all(placement: Placement, held, limit: int) -> int:
    """The latest of the numbers `held` (from 1 to `limit`) that every worker holds; 0 if none.

    Each worker marks what it holds; a sum over all replicas counts, for every number, the
    replicas that hold it. Every worker must call it, with the same `limit`.
    """
    if placement.num_workers == 1:
        return max(held, default=0)
    tf = import_tensorflow()
    strategy = placement.strategy
    marks = np.zeros(limit + 1, np.float32)
    marks[[number for number in held if 0 < number <= limit]] = 1
    counts = strategy.reduce("SUM", strategy.run(lambda: tf.constant(marks)), axis=None).numpy()
    everywhere = np.flatnonzero(counts >= strategy.num_replicas_in_sync)
    return int(everywhere.max(initial=0))
