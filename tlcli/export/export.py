"""Exporting a trained model for serving: SavedModel, Keras, TFLite and ONNX.

Everything is written into a hidden folder beside `--out` and renamed into place only after
every artefact has been written and verified, so an interrupted or failed export never leaves
a half-written model at `--out` (a killed one may leave the hidden `.NAME.partial-*` folder).

    OUT/saved_model/   serving_default (pixels) and serving_bytes (encoded images) signatures,
                       and serving_tta (pixels, test-time augmentation) with --tta; a multi-label
                       run's also serving_decisions and serving_bytes_decisions (probabilities and
                       0/1 decisions at the run's per-label thresholds)
    OUT/model.keras    loadable with keras.saving.load_model in safe mode
    OUT/model.tflite   float32, or quantised with --quantize
    OUT/model.onnx     converted from the SavedModel's serving_default signature
    OUT/labels.txt     class names, one per line, in label order
    OUT/metadata.json  backbone, image size, preprocessing, classes, metrics, versions, checks
                       (and a multi-label run's thresholds)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tlcli.data.dataset import Sample, discover, image_files_below, packed_dataset
from tlcli.data.images import ImageInfo, check_images
from tlcli.data.labels import LabelFile
from tlcli.data.packed import is_packed
from tlcli.errors import TlcliError
from tlcli.events import DETAIL, SILENT, Events
from tlcli.export.verify import Check, verify_artefacts
from tlcli.models.backbones import BACKBONES
from tlcli.models.saved import load_run_model
from tlcli.models.tta import VIEW_SETS
from tlcli.runs.directory import RunInfo, read_run
from tlcli.runs.locks import locks_outputs
from tlcli.runs.names import EVALUATION, EXPORT_METADATA, LABELS, METRICS
from tlcli.runs.outputs import building, claim_output, kept_note
from tlcli.runs.staging import staged_output
from tlcli.runtime import import_keras, import_tensorflow, latched_interrupts, silenced_stderr
from tlcli.runtime import versions as runtime_versions
from tlcli.storage import Location, Url, location

FORMATS = ("saved_model", "keras", "tflite", "onnx")
QUANTIZATIONS = ("dynamic", "float16", "int8")
ARTEFACTS = {
    "saved_model": "saved_model",
    "keras": "model.keras",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}
METADATA = EXPORT_METADATA
PIXELS_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
TTA_SIGNATURE = "serving_tta"
DECISIONS_SIGNATURE = "serving_decisions"
BYTES_DECISIONS_SIGNATURE = "serving_bytes_decisions"
OUTPUT_NAME = "probabilities"
DECISIONS_NAME = "decisions"
ONNX_OPSET = 17
VERIFY_COUNT = 8  # images from the dataset that every artefact is checked on
VERIFY_LIMIT = 64  # at most this many of the --verify-images
CALIBRATION_COUNT = 200  # training images that calibrate int8 quantisation
# tlcli is installed from its checkout, not from the package index, so the extra is too.
ONNX_INSTALL = 'pip install -e ".[onnx]" in the tlcli checkout (tf2onnx and onnxruntime)'


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    formats: tuple[str, ...] = ("saved_model",)
    quantize: str | None = None
    overwrite: bool = False
    verify: bool = True
    verify_images: tuple[Path, ...] = ()
    data: Path | None = None
    tta: str | None = None  # a view set of tlcli.models.tta: the SavedModel gains serving_tta

    def __post_init__(self):
        formats = tuple(dict.fromkeys(self.formats or ("saved_model",)))
        for name in formats:
            if name not in FORMATS:
                raise TlcliError(f"--format {name} is not a format tlcli exports. Use one of: {', '.join(FORMATS)}.")
        object.__setattr__(self, "formats", formats)
        object.__setattr__(self, "out", location(self.out))
        if self.quantize is not None:
            if self.quantize not in QUANTIZATIONS:
                raise TlcliError(
                    f"--quantize {self.quantize} is not known. Use one of: {', '.join(QUANTIZATIONS)}."
                )
            if "tflite" not in formats:
                raise TlcliError(
                    f"--quantize {self.quantize} applies to TFLite only, and --format tflite was not asked "
                    "for. Add --format tflite, or drop --quantize."
                )
        if self.tta is not None:
            if self.tta not in VIEW_SETS:
                raise TlcliError(f"--tta-views {self.tta} is not known. Use one of: {', '.join(VIEW_SETS)}.")
            if "saved_model" not in formats:
                raise TlcliError(
                    f"--tta adds the {TTA_SIGNATURE} signature to the SavedModel, and --format saved_model was "
                    "not asked for (the other formats stay single-view). Add --format saved_model, or drop --tta."
                )


@dataclass
class ExportReport:
    out: Path
    files: dict[str, Path]
    checks: list[Check] = field(default_factory=list)
    kept: str | None = None  # the files tlcli did not write in an earlier export at --out, kept


def claim_destination(options: ExportOptions, model_path: Path) -> None:
    """Lock --out and refuse one that would lose anything (runs.claim_output), before any model is loaded."""
    info = read_run(model_path)
    data = options.data or _recorded_data(info)
    claim_output(options.out, "export", overwrite=options.overwrite, data=(data, *info.dataset_places),
                 sources={location(model_path): "the model being exported"})


def require_tf2onnx():
    """The tf2onnx module, or a TlcliError saying how to install the optional extra."""
    import_tensorflow()  # first, quietly: tf2onnx imports it
    try:
        import tf2onnx  # noqa: F401
        from tf2onnx import tf_loader  # noqa: F401
    except ImportError as error:
        raise TlcliError(
            f"--format onnx needs tf2onnx, which is not installed ({error}). Install it with {ONNX_INSTALL}."
        ) from None
    return tf2onnx


@locks_outputs
def export_model(model_path: Location, options: ExportOptions, events: Events = SILENT) -> ExportReport:
    """Write the asked-for formats of a run's model to `options.out` (a folder, or a URL:
    runs.staging), verified, all or nothing. Each step is told to `events` as a note as it begins."""
    if not isinstance(options.out, Url):
        return _export_model(model_path, options, events)
    data = options.data or _recorded_data(read_run(model_path))
    with staged_output(options.out, "export", overwrite=options.overwrite, data=data,
                       sources={location(model_path): "the model being exported"}) as staged:
        report = _export_model(model_path, dataclasses.replace(options, out=staged.local), events)
        return ExportReport(staged.target, {name: staged.public(path) for name, path in report.files.items()},
                            report.checks)


def _export_model(model_path: Location, options: ExportOptions, events: Events) -> ExportReport:
    out = options.out
    claim_destination(options, model_path)
    if "onnx" in options.formats:
        require_tf2onnx()
    model, info = load_run_model(model_path)
    # Images are chosen before anything is written, so a missing dataset fails at once.
    verify_samples = verification_samples(info, options) if options.verify else []
    calibration = calibration_samples(info, options) if options.quantize == "int8" else []

    with latched_interrupts() as interrupts:

        def step(message: str) -> None:
            interrupts.check()  # a Ctrl-C that TensorFlow swallowed stops the export here
            events.note(f"{message}...", DETAIL)

        with building(out, "export") as staging:  # swapped in whole, only once verified
            files, checks = _write_and_verify(model, info, options, staging, calibration, verify_samples, step)
            interrupts.check()
    return ExportReport(out, {name: out / path.relative_to(staging) for name, path in files.items()}, checks,
                        kept_note(out))


def _write_and_verify(model, info, options, staging, calibration, verify_samples, step):
    """Every artefact, labels.txt and metadata.json in `staging`; raises if verification fails.
    `step(message)` begins each step."""
    files = write_artefacts(model, info, options, staging, calibration, step)
    checks = []
    if options.verify:
        step(f"Verifying in a fresh process on {len(verify_samples)} image(s)")
        checks = verify_artefacts(model, files, verify_samples, info.image_size, options.quantize, options.tta,
                                  run_thresholds(info))
    (staging / LABELS).write_text("\n".join(info.class_names) + "\n")
    metadata = build_metadata(info, options, files, checks)
    (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    failed = [check for check in checks if not check.passed]
    if failed:
        raise TlcliError(
            "Verification failed, nothing was written to --out: "
            + "; ".join(f"{c.format}: {_describe(c)}, required {c.requirement}" for c in failed)
            + ". Re-export without --quantize (or with another --quantize), or report a bug."
        )
    return files, checks


def _describe(check: Check) -> str:
    return f"max |difference| {check.max_abs_difference:.2g}, top class agrees on {check.top_class_agreement:.0%}"


def write_artefacts(model, info: RunInfo, options: ExportOptions, staging: Path, calibration, step):
    """Write each format into `staging`, each begun with `step(message)`; return {format: path}."""
    files: dict[str, Path] = {}
    needs_saved_model = {"saved_model", "tflite", "onnx"} & set(options.formats)
    saved_model = staging / ARTEFACTS["saved_model"]
    if needs_saved_model:
        step("Writing the SavedModel")
        write_saved_model(model, info.image_size, saved_model, options.tta, run_thresholds(info))
        if "saved_model" in options.formats:
            files["saved_model"] = saved_model
    if "keras" in options.formats:
        step("Writing the Keras model")
        files["keras"] = staging / ARTEFACTS["keras"]
        with silenced_stderr():
            model.save(files["keras"])
    if "tflite" in options.formats:
        step(f"Converting to TFLite ({options.quantize or 'float32'})")
        files["tflite"] = staging / ARTEFACTS["tflite"]
        write_tflite(saved_model, files["tflite"], options.quantize, calibration, info.image_size)
    if "onnx" in options.formats:
        step("Converting to ONNX")
        files["onnx"] = staging / ARTEFACTS["onnx"]
        write_onnx(saved_model, files["onnx"])
    if "saved_model" not in options.formats and saved_model.exists():
        shutil.rmtree(saved_model)  # written only to convert from
    return files


@contextlib.contextmanager
def quietly():
    """Keep converters' chatter (C++ logs, prints, warnings, Python logging) off the terminal."""
    with silenced_stderr(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def run_thresholds(info: RunInfo) -> list[float] | None:
    """A multi-label run's decision thresholds in label order (0.5 for a label without one), else None."""
    if not info.multi_label:
        return None
    thresholds = info.thresholds()
    return [float(thresholds.get(name, 0.5)) for name in info.class_names]


def write_saved_model(model, image_size: int, path: Path, tta: str | None = None,
                      thresholds: list[float] | None = None) -> None:
    """A SavedModel with a pixels signature (serving_default) and an encoded-bytes signature, and
    with a `tta` view set a third, serving_tta: pixels in, probabilities averaged over the views.
    With multi-label `thresholds`, serving_decisions and serving_bytes_decisions give each
    label's 0/1 decision (probability >= its threshold) beside the probabilities; serving_default
    keeps its single output, so the TFLite and ONNX files converted from it are unchanged.

    Test-time augmentation gets a signature of its own so that serving_default (and the TFLite
    and ONNX files converted from it) stays one image, one forward pass.
    """
    tf = import_tensorflow()
    keras = import_keras()
    from tlcli.models.tta import MultiViewClassifier

    # No archive.track(model): the endpoints capture every variable they use, and track() would
    # store each weight a second time (2x the size on disk and in a server's memory:
    # keras-team/keras#23553).
    archive = keras.export.ExportArchive()
    pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")
    encoded = tf.TensorSpec([None], tf.string, name="image_bytes")
    from_pixels, from_bytes = _serving_functions(model, image_size)
    archive.add_endpoint(PIXELS_SIGNATURE, from_pixels, input_signature=[pixels])
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes, input_signature=[encoded])
    if thresholds is not None:
        cut = tf.constant(thresholds, tf.float32)

        def with_decisions(outputs):
            probabilities = outputs[OUTPUT_NAME]
            return {OUTPUT_NAME: probabilities, DECISIONS_NAME: tf.cast(probabilities >= cut, tf.int32)}

        archive.add_endpoint(DECISIONS_SIGNATURE, lambda images: with_decisions(from_pixels(images)),
                             input_signature=[pixels])
        archive.add_endpoint(BYTES_DECISIONS_SIGNATURE, lambda image_bytes: with_decisions(from_bytes(image_bytes)),
                             input_signature=[encoded])
    if tta is not None:
        averaged = MultiViewClassifier(model, tta, average=True)
        archive.add_endpoint(TTA_SIGNATURE, lambda images: {OUTPUT_NAME: averaged(images, training=False)},
                             input_signature=[pixels])
    with quietly():
        archive.write_out(str(path), verbose=False)


def _serving_functions(model, image_size: int):
    """The model's probabilities from a batch of pixels, and from a batch of encoded images."""
    tf = import_tensorflow()
    from tlcli.data.pipeline import decode_image

    image_spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)

    # training=False in both: dropout or augmentation layers must never run when serving, or
    # the same image would get different answers.
    def from_pixels(images):
        return {OUTPUT_NAME: model(images, training=False)}

    def from_bytes(image_bytes):
        images = tf.map_fn(
            lambda encoded: decode_image(encoded, image_size), image_bytes, fn_output_signature=image_spec
        )
        return {OUTPUT_NAME: model(images, training=False)}

    return from_pixels, from_bytes


def write_tflite(saved_model: Path, path: Path, quantize: str | None, calibration, image_size: int) -> None:
    """Convert the SavedModel's pixels signature (TFLite has no image decoders) to a .tflite file."""
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[PIXELS_SIGNATURE])
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        from tlcli.data.pipeline import image_dataset

        def representative_dataset():
            for images, _ in image_dataset(calibration, image_size, 1):
                yield [images]

        # Inputs and outputs stay float32 (RGB pixels in, probabilities out), as for every format.
        converter.representative_dataset = representative_dataset
    with quietly():
        try:
            flatbuffer = converter.convert()
        except Exception as error:
            raise TlcliError(f"TFLite conversion failed: {_first_line(error)}") from error
    path.write_bytes(flatbuffer)


def write_onnx(saved_model: Path, path: Path) -> None:
    """Convert the SavedModel's pixels signature to ONNX, keeping its input and output names."""
    tf2onnx = require_tf2onnx()
    from tf2onnx import tf_loader

    with quietly():
        try:
            graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
                str(saved_model), None, None, tag="serve", signatures=[PIXELS_SIGNATURE],
                return_tensors_to_rename=True,
            )
            tf2onnx.convert.from_graph_def(
                graph_def, input_names=inputs, output_names=outputs, opset=ONNX_OPSET,
                tensors_to_rename=renames, output_path=str(path),
            )
        except Exception as error:
            raise TlcliError(f"ONNX conversion failed: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- images for verification and calibration --------------------------------------------------


def verification_samples(info: RunInfo, options: ExportOptions) -> list[Sample]:
    """A handful of real images: --verify-images, else a few from --data or the run's dataset."""
    if options.verify_images:
        return _usable(_image_files(options.verify_images), VERIFY_LIMIT, "--verify-images")
    root = _dataset_root(info, options, "to verify the exported model on (or --verify-images, or --no-verify)")
    return _dataset_samples(info, root, VERIFY_COUNT, ("test", "val", "all", "train"))


def calibration_samples(info: RunInfo, options: ExportOptions) -> list[Sample]:
    """Up to CALIBRATION_COUNT training images for int8's representative dataset."""
    if options.data is None and not _recorded_data(info) and options.verify_images:
        return _usable(_image_files(options.verify_images), CALIBRATION_COUNT, "--verify-images")
    root = _dataset_root(info, options, "to calibrate --quantize int8 on (or --verify-images)")
    return _dataset_samples(info, root, CALIBRATION_COUNT, ("train", "all", "val", "test"))


def _dataset_samples(info: RunInfo, root: Path, count: int, splits: tuple[str, ...]) -> list[Sample]:
    """`pick_samples` of the run's dataset, by its label file if it had one. Once that file is
    gone, any images of the dataset serve: checking an export needs images, not their labels."""
    recorded = info.config.get("labels")
    if recorded and not location(recorded).exists():
        return _usable(image_files_below(root), count, f"the dataset {root}")
    return pick_samples(root, count, splits, LabelFile.recorded(info.config))


def _recorded_data(info: RunInfo) -> Path | None:
    recorded = info.config.get("data")
    return location(recorded) if recorded and location(recorded).is_dir() else None


def _dataset_root(info: RunInfo, options: ExportOptions, purpose: str) -> Path:
    if options.data is not None:
        if not location(options.data).is_dir():
            raise TlcliError(f"--data {options.data} is not a folder. Pass the dataset folder the model was trained on.")
        return location(options.data)
    recorded = info.config.get("data")
    if _recorded_data(info) is None:
        where = f"its recorded dataset {recorded} is not there" if recorded else "it records no dataset"
        raise TlcliError(f"{info.model_path}: {where}. Pass --data DATA with images {purpose}.")
    return location(recorded)


def pick_samples(root: Path, count: int, splits: tuple[str, ...], labels: LabelFile | None = None) -> list[Sample]:
    """Up to `count` usable images of the first split present, taken in turn from each class
    (of the class folders, or of the run's label file).

    Only the chosen files are opened, so this stays quick on a large dataset.
    """
    if is_packed(root):
        return _packed_samples(root, count, splits)
    found = discover(root, labels)
    split = next((name for name in splits if any(found.files.get(name, {}).values())), None)
    seen: set[Path] = set()  # a multi-label image is listed under each of its labels
    if split is None:
        raise TlcliError(f"{root} holds no images. Pass --data with the dataset, or --verify-images.")
    classes = found.files[split]
    label_of = {name: index for index, name in enumerate(sorted(classes))}
    queues = [[(path, label_of[name]) for path in paths] for name, paths in sorted(classes.items())]
    interleaved = [item for round_ in _zip_longest(queues) for item in round_]
    samples = []
    for start in range(0, len(interleaved), 2 * count):
        chunk = interleaved[start : start + 2 * count]
        checked = check_images([path for path, _ in chunk])
        for path, label in chunk:
            if isinstance(checked[path], ImageInfo) and len(samples) < count and path not in seen:
                seen.add(path)
                samples.append(Sample(path, label, checked[path].needs_pil))
        if len(samples) >= count:
            break
    if not samples:
        raise TlcliError(f"The {split} split of {root} has no usable images. Pass --verify-images with some images.")
    return samples


def _packed_samples(root: Path, count: int, splits: tuple[str, ...]) -> list[Sample]:
    """`pick_samples` of a packed dataset: its images were checked when packed."""
    dataset = packed_dataset(root)
    split = next((name for name in splits if dataset.splits.get(name)), None)
    if split is None:
        raise TlcliError(f"{root} holds no images. Pass --data with the dataset, or --verify-images.")
    queues = [[sample for sample in dataset.splits[split] if sample.label == label]
              for label in range(len(dataset.class_names))]
    return [sample for round_ in _zip_longest(queues) for sample in round_][:count]


def _zip_longest(queues):
    for index in range(max((len(queue) for queue in queues), default=0)):
        yield [queue[index] for queue in queues if index < len(queue)]


def _image_files(paths) -> list[Path]:
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += image_files_below(path)
        elif path.is_file():
            files.append(path)
        else:
            raise TlcliError(f"--verify-images {path} does not exist. Pass image files or folders of images.")
    return files


def _usable(files: list[Path], limit: int, option: str) -> list[Sample]:
    checked = check_images(files[: 4 * limit])
    samples = [Sample(path, 0, result.needs_pil) for path, result in checked.items() if isinstance(result, ImageInfo)]
    if not samples:
        raise TlcliError(
            f"{option}: none of the {len(files)} file(s) given is a usable image. "
            "Pass JPEG, PNG, BMP, GIF or WebP files, or folders holding them."
        )
    return samples[:limit]


# --- metadata ----------------------------------------------------------------------------------


def build_metadata(info: RunInfo, options: ExportOptions, files: dict[str, Path], checks: list[Check]) -> dict:
    spec = BACKBONES.get(info.backbone)
    versions = runtime_versions()
    if "onnx" in files:
        versions["tf2onnx"] = require_tf2onnx().__version__
    return {
        "backbone": info.backbone or None,
        "image_size": info.image_size,
        "input": f"float32 RGB pixels in [0, 255], shape [batch, {info.image_size}, {info.image_size}, 3]",
        "output": (f"float32 label probabilities (a sigmoid per label, multi-label), shape "
                   f"[batch, {len(info.class_names)}]" if info.multi_label else
                   f"float32 class probabilities (softmax), shape [batch, {len(info.class_names)}]"),
        **({"multi_label": True, "thresholds": dict(zip(info.class_names, run_thresholds(info))),
            "decisions": "label i is predicted when probabilities[i] >= thresholds[label i]"}
           if info.multi_label else {}),
        "preprocessing": (
            f"{spec.preprocessing}, inside the model (no preprocessing needed by clients)" if spec else
            "inside the model (no preprocessing needed by clients)"
        ),
        "class_names": list(info.class_names),
        "num_classes": len(info.class_names),
        "files": {name: ARTEFACTS[name] for name in files},
        "saved_model_signatures": {
            PIXELS_SIGNATURE: {"inputs": {"images": "float32 [batch, size, size, 3]"}, "outputs": [OUTPUT_NAME]},
            BYTES_SIGNATURE: {"inputs": {"image_bytes": "string [batch] (JPEG/PNG/GIF/BMP/WebP files)"},
                              "outputs": [OUTPUT_NAME]},
            **({TTA_SIGNATURE: {"inputs": {"images": "float32 [batch, size, size, 3]"}, "outputs": [OUTPUT_NAME],
                                "test_time_augmentation": VIEW_SETS[options.tta].describe()}} if options.tta else {}),
            **({DECISIONS_SIGNATURE: {"inputs": {"images": "float32 [batch, size, size, 3]"},
                                      "outputs": [OUTPUT_NAME, DECISIONS_NAME]},
                BYTES_DECISIONS_SIGNATURE: {"inputs": {"image_bytes": "string [batch] (JPEG/PNG/GIF/BMP/WebP files)"},
                                            "outputs": [OUTPUT_NAME, DECISIONS_NAME]}} if info.multi_label else {}),
        } if "saved_model" in files else None,
        "tflite_quantization": (options.quantize or "none (float32)") if "tflite" in files else None,
        "metrics": read_metrics(info),
        "verification": [asdict(check) for check in checks] or "skipped (--no-verify)",
        "source_model": str(info.model_location.resolve()),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
    }


def read_metrics(info: RunInfo) -> dict:
    """Validation and test metrics the run recorded (metrics.json, evaluation.json), if any."""
    metrics = {}
    for name, key in ((METRICS, "validation"), (EVALUATION, "evaluation")):
        path = info.path / name
        if path.is_file():
            try:
                metrics[key] = json.loads(path.read_text())
            except ValueError:
                continue
    return metrics
