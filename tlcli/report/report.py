"""`tlcli report`: one HTML page of a run, its evaluations and its data's audit, that opens
offline in any browser; and the page `tlcli evaluate` writes beside its reports.

The page is claimed through the output policy (runs.outputs) before any thumbnail is made: by
default it is the run's own report.html, refreshed; --out names another .html file (new, or one
tlcli wrote, with --overwrite), never inside a dataset or over someone's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from tlcli.errors import TlcliError
from tlcli.events import SILENT, Events
from tlcli.report.page import build_page, render
from tlcli.report.sources import (
    AuditSource,
    EvaluationSource,
    RunSource,
    folder_files,
    place_key,
    read_audit,
    read_evaluation,
    read_evaluation_folder,
    read_run_source,
)
from tlcli.report.thumbnails import Images, fill_tiles, read_files
from tlcli.runs.atomic import write_atomic
from tlcli.runs.names import EVALUATION, REPORT_PAGE
from tlcli.runs.outputs import claim_file, record_files
from tlcli.storage import Location, location

SUFFIX = ".html"
OWN = {"run": (REPORT_PAGE,), "export": (REPORT_PAGE,), "evaluation": (REPORT_PAGE,)}


@dataclass(frozen=True)
class ReportConfig:
    """What `tlcli report` is asked: the run, the evaluations and audit to show with it, and where."""

    run: Path
    evaluations: tuple[Path, ...] = ()  # evaluate --out folders (the run's own reports come anyway)
    audit: Path | None = None  # an audit --out folder
    explanations: tuple[Path, ...] = ()  # explain --out folders (the run's explain/ comes anyway)
    out: Path | None = None  # None: RUN/report.html
    overwrite: bool = False


@dataclass
class ReportResult:
    path: Location
    size: int  # bytes
    evaluations: int
    thumbnails: int
    notes: list[str] = field(default_factory=list)


def report(config: ReportConfig, events: Events = SILENT) -> ReportResult:
    """Read what the run and the given folders hold (each refused in one line when it is not what
    it should be), claim the page, make the thumbnails (counted through `events`) and write it."""
    run = read_run_source(config.run, config.explanations)
    evaluations = _evaluations(run, config.evaluations)
    audit = read_audit(config.audit) if config.audit is not None else None
    path = claim_page(config, run, evaluations, audit)
    html, page = page_html(run, evaluations, audit, read_files, events)
    content = html.encode("utf-8")
    write_atomic(path, content)
    record_files(path.parent, [path.name])
    return ReportResult(path, len(content), len(evaluations), len(page.tiles()), page.notes)


def _evaluations(run: RunSource, folders: tuple[Path, ...]) -> list[EvaluationSource]:
    """The run's own evaluation (evaluate without --out), then each --evaluation folder, once each."""
    found, seen = [], set()
    if (run.folder / EVALUATION).is_file():
        found.append(read_evaluation(folder_files(run.folder), run.folder))
        seen.add(place_key(run.folder))
    for folder in folders:
        if place_key(location(folder)) not in seen:
            found.append(read_evaluation_folder(folder))
            seen.add(place_key(location(folder)))
    return found


def claim_page(config: ReportConfig, run: RunSource, evaluations: list[EvaluationSource],
               audit: AuditSource | None) -> Location:
    """Where the page goes, checked before any work: --out, else the run's own report.html (only in
    a run or export folder that tlcli made)."""
    if config.out is None and run.kind not in ("run", "export"):
        raise TlcliError(f"{run.folder} is not a run or export folder that tlcli made, so the report is not written "
                         "there. Name a file for it with --out (e.g. --out report.html).")
    datasets = [location(run.config["data"])] if run.config.get("data") else []
    datasets += [location(source.document["data"]) for source in evaluations if source.document.get("data")]
    if audit is not None and audit.document.get("data"):
        datasets.append(location(audit.document["data"]))
    return claim_file(config.out if config.out is not None else run.folder / REPORT_PAGE, suffix=SUFFIX,
                      overwrite=config.overwrite, default=config.out is None, data=tuple(datasets), own=OWN)


def page_html(run: RunSource, evaluations: list[EvaluationSource], audit: AuditSource | None, images: Images,
              events: Events = SILENT):
    """(the page's HTML, the page) with its thumbnails read through `images`."""
    page = build_page(run, evaluations, audit)
    tiles = page.tiles()
    with events.counting("Making thumbnails", len(tiles), rate="images") as advance:
        fill_tiles(tiles, images, advance)
    return render(page), page


def evaluation_page(model: Location, reports: Mapping[str, str | bytes], folder: Location, images: Images) -> bytes:
    """The page `tlcli evaluate` writes beside its reports (encoded): the evaluated run (`model`'s
    folder), and the `reports` it is about to write into `folder`, its images read through `images`."""
    run = read_run_source(model)

    def files(name: str) -> bytes | None:
        content = reports.get(name)
        return content.encode("utf-8") if isinstance(content, str) else content

    html, _ = page_html(run, [read_evaluation(files, folder)], None, images)
    return html.encode("utf-8")
