"""Process-wide settings (`tlcli.runtime`): TensorFlow's start-up noise kept off the terminal (and
shown again when something fails, or with --debug), seeds that repeat a run, a Ctrl-C never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tlcli.runtime import DEBUG_ENV, debug_enabled, latched_interrupts, set_seed, silenced_stderr


@pytest.mark.subprocess  # only a fresh interpreter imports TensorFlow, and prints its noise, again
def test_tensorflow_start_up_noise_stays_off_stderr():
    code = "from tlcli.runtime import import_tensorflow; tf = import_tensorflow(); print(tf.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0 and result.stdout.startswith("2.")
    assert result.stderr == ""


def _write_to_descriptor_2(text: str) -> None:
    """As C++ code writes (TensorFlow's absl and oneDNN lines): below Python's sys.stderr."""
    os.write(2, text.encode())


def test_what_is_written_to_stderr_while_silenced_is_dropped_unless_the_body_fails(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with silenced_stderr():
        _write_to_descriptor_2("oneDNN custom operations are on.\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), silenced_stderr():
        _write_to_descriptor_2("libcudart.so.12: cannot open shared object file\n")
        raise ImportError("DLL load failed")
    assert capfd.readouterr().err == "libcudart.so.12: cannot open shared object file\n"  # the why of the failure
    _write_to_descriptor_2("after\n")
    assert capfd.readouterr().err == "after\n"  # descriptor 2 is the terminal again


@pytest.mark.parametrize("value, enabled", [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_debug_shows_what_is_written_to_stderr_as_it_is(capfd, monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv(DEBUG_ENV, raising=False)
    else:
        monkeypatch.setenv(DEBUG_ENV, value)
    assert debug_enabled() is enabled
    with silenced_stderr():
        _write_to_descriptor_2("noise\n")
    assert capfd.readouterr().err == ("noise\n" if enabled else "")


def test_a_seed_repeats_every_random_draw_and_another_seed_changes_them():
    import keras
    import tensorflow as tf

    def draws():
        return (np.random.random(3), tf.random.uniform((3,)).numpy(),
                keras.random.uniform((3,), seed=keras.random.SeedGenerator()).numpy())

    set_seed(7)
    first = draws()
    set_seed(7)
    again = draws()
    set_seed(8)
    other = draws()
    for one, two, three in zip(first, again, other):
        np.testing.assert_array_equal(one, two)
        assert not np.array_equal(one, three)


def test_a_ctrl_c_that_a_library_drops_is_raised_again_at_the_next_check():
    with latched_interrupts() as latch:
        latch.check()  # nothing pressed yet
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            pass  # what a finaliser does: printed as "Exception ignored", and dropped
        assert latch.pressed
        with pytest.raises(KeyboardInterrupt):
            latch.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back when the block ends

