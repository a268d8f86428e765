"""Importing TensorFlow quietly, and other process-wide settings.

TensorFlow prints start-up noise on stderr (absl, oneDNN and CUDA lines) from C++ before any
Python logging setting applies, so the only reliable way to keep it off the user's terminal is
to point file descriptor 2 elsewhere while it loads. What it printed is replayed if the import
fails, and shown as it is with `--debug` (TLCLI_DEBUG=1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading

DEBUG_ENV = "TLCLI_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def silenced_stderr():
    """Send everything written to fd 2 to a temporary file; replay it if the body raises."""
    if debug_enabled():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Return the `tensorflow` module, imported without start-up noise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not debug_enabled():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with silenced_stderr():
        import keras  # noqa: F401  (its first import prints too)
        import tensorflow as tf
    if not debug_enabled():
        import warnings

        import absl.logging

        # Keras and TensorFlow warn about their own internals; users see them with --debug.
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl)(\.|$)")

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel("ERROR")
    return tf


def import_keras():
    import_tensorflow()
    import keras

    return keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras so that runs repeat on the same machine."""
    keras = import_keras()
    keras.utils.set_random_seed(seed)


class InterruptLatch:
    """Remembers a Ctrl-C, even one whose KeyboardInterrupt a library dropped."""

    pressed = False

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt


@contextlib.contextmanager
def latched_interrupts():
    """Ctrl-C that cannot be lost: `check()` raises it again at the next safe point.

    Python raises KeyboardInterrupt wherever the main thread happens to be. Inside a finaliser,
    such as TensorFlow's AtomicFunction.__del__ that the TFLite converter's gc.collect() runs,
    it is printed as "Exception ignored" and dropped, and the work would carry on to the end.
    """
    latch = InterruptLatch()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield latch  # Ctrl-C is handled (or ignored) by someone else here
        return

    def note_and_raise(signum, frame):
        latch.pressed = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_raise)
    try:
        yield latch
    finally:
        signal.signal(signal.SIGINT, previous)


def versions() -> dict:
    """The versions a run or export records: tlcli, TensorFlow, Keras and Python."""
    import platform

    from tlcli import __version__

    return {
        "tlcli": __version__,
        "tensorflow": import_tensorflow().__version__,
        "keras": import_keras().__version__,
        "python": platform.python_version(),
    }
