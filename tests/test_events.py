"""What a workflow reports as it runs (`tlcli.events`): nothing at all by default, so that the library
prints nothing of its own; everything, in order, to an `Events` that a caller (a command) passes."""

from __future__ import annotations

import contextlib

import tiny_backbone
from tlcli.events import INFO, SILENT, Events


class Recording(Events):
    """A caller's Events: every report kept, in order."""

    def __init__(self):
        self.reports = []

    def placed(self, placement, batch_size):
        self.reports.append(("placed", placement.name, batch_size))

    def dataset(self, dataset):
        self.reports.append(("dataset", dataset.class_names))

    def note(self, message, level=INFO):
        self.reports.append(("note", message, level))

    def fit_progress(self, epochs, steps, stage):
        self.reports.append(("fit_progress", epochs, steps, stage))
        return None

    def skipped(self, what, reason):
        self.reports.append(("skipped", str(what), reason))

    @contextlib.contextmanager
    def counting(self, description, total, rate=None):
        counted = []
        yield counted.append
        self.reports.append(("counted", description, total, sum(counted)))


def test_the_library_prints_nothing_itself_and_tells_its_callers_events_everything(colour_dataset, tmp_path, capfd):
    """So that with the default (`SILENT`, below) a library call prints nothing at all."""
    from tlcli.training.config import FitConfig, TrainConfig
    from tlcli.training.train import train

    recording = Recording()
    config = TrainConfig(data=colour_dataset, model=tiny_backbone.NAME, out=tmp_path / "run", weights="none",
                         image_size=32, head_solver="gradient", fit=FitConfig(epochs=1, batch_size=8))
    train(config, events=recording)
    assert capfd.readouterr() == ("", "")  # not a line on stdout or stderr
    reports = recording.reports
    assert reports[:2] == [("placed", "default", 8), ("dataset", ("blue", "green", "red"))]  # where, then what
    counted = [report for report in reports if report[0] == "counted"]
    assert counted and all(total == done for _, _, total, done in counted)  # every item counted, once
    assert ("fit_progress", 1, 3, "train") in reports  # 24 training images, batches of 8
    assert all(isinstance(report[1], str) for report in reports if report[0] == "note")


def test_the_silent_default_takes_every_report_and_shows_none(capfd):
    with SILENT.counting("Features (train)", 3) as advance:
        advance(3)
    SILENT.note("a note")
    assert SILENT.fit_progress(1, 3, "train") is None and capfd.readouterr() == ("", "")


def test_inspect_and_pack_count_every_file_to_their_callers_events_and_print_nothing(messy_dataset, tmp_path, capfd):
    from tlcli.data.inspection import InspectConfig, inspect_data
    from tlcli.data.pack import PackConfig, pack

    inspecting, packing = Recording(), Recording()
    report = inspect_data(InspectConfig(data=messy_dataset), inspecting)
    outcome = pack(PackConfig(data=messy_dataset, out=tmp_path / "pack"), packing)
    assert inspecting.reports == [("counted", "Checking images", report.files, report.files)]
    packed = sum(outcome.records.values())  # each file checked, then each usable one packed
    assert packing.reports == [("counted", "Checking, then packing images", 2 * report.files, report.files + packed)]
    assert inspect_data(InspectConfig(data=tmp_path / "pack"), inspecting).layout == "packed"
    assert inspecting.reports[-1] == ("counted", "Verifying shards", outcome.shards, outcome.shards)
    assert capfd.readouterr() == ("", "")
