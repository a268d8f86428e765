"""The page: its parts gathered from the sources, its table of contents, and the HTML that the
Jinja2 template renders from them, with autoescaping on, so that every class name, path and
note the page shows is text, never markup."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import jinja2

from tlcli.report.audit_findings import AuditFindings, audit_findings
from tlcli.report.evaluations import Calibration, Evaluation, calibration, evaluation
from tlcli.report.run_facts import Learning, RunFacts, learning, run_facts
from tlcli.report.sources import AuditSource, EvaluationSource, RunSource, place_key
from tlcli.report.text import file_name
from tlcli.report.thumbnails import Tile
from tlcli.runs.atomic import signature, signed_html

TEMPLATE = "report.html.j2"


@dataclass
class Page:
    title: str
    subtitle: str
    generator: str
    run: RunFacts
    learning: Learning
    calibration: Calibration | None
    evaluations: list[Evaluation]
    audit: AuditFindings | None
    notes: list[str] = field(default_factory=list)

    def tiles(self) -> list[Tile]:
        """Every image the page shows, for their thumbnails to be made in one pass."""
        return [*(tile for item in self.evaluations for tile in item.failures),
                *(self.audit.tiles() if self.audit else [])]

    def contents(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """The table of contents: (anchor, title, [(anchor, title) of its parts])."""
        learnt = [(anchor, title) for anchor, title, shown in (
            ("penalty", "Penalty path", self.learning.penalty), ("stages", "Fine-tuning stages", self.learning.stages),
            ("curves", "Training curves", self.learning.curves_picture or self.learning.history)) if shown]
        contents = [
            ("run", "What the run is", [("options", "Options"), *([("images", "Images")] if self.run.splits else []),
                                        *([("versions", "Versions")] if self.run.versions else [])]),
            ("learning", "How it learnt", learnt),
            ("quality", "How good it is", [*((item.anchor, item.title) for item in self.evaluations),
                                           ("calibration", "Calibration")]),
            ("failures", "Where it fails", [(f"failures-{number}", item.title)
                                            for number, item in enumerate(self.evaluations, start=1)]),
        ]
        if self.audit:
            contents.append(("audit", "The data's audit", [("suspects", "Likely label errors"),
                                                           ("duplicates", "Near-duplicates"), ("outliers", "Outliers")]))
        if self.notes:
            contents.append(("notes", "Notes", []))
        return contents


def build_page(run: RunSource, evaluations: Sequence[EvaluationSource], audit: AuditSource | None) -> Page:
    """Everything the page shows but the thumbnails (`Page.tiles`, filled in afterwards)."""
    notes = [f"the evaluation in {source.folder} scored {source.document.get('model')}, not this run's model"
             for source in evaluations if not _same_model(source, run)]
    return Page(
        title=f"Report of {file_name(str(run.folder))}",
        subtitle=f"{run.folder} · written by {signature()} on {datetime.now():%Y-%m-%d %H:%M}",
        generator=signature(),
        run=run_facts(run),
        learning=learning(run),
        calibration=calibration(run),
        evaluations=[evaluation(source, run, number) for number, source in enumerate(evaluations, start=1)],
        audit=audit_findings(audit) if audit is not None else None,
        notes=notes,
    )


def _same_model(source: EvaluationSource, run: RunSource) -> bool:
    model = str(source.document.get("model") or "")
    folder = model.rsplit("/", 1)[0] if model.endswith(".keras") else model
    return not model or place_key(folder) == place_key(run.folder)


def render(page: Page) -> str:
    """The page's HTML, signed as tlcli's (runs.atomic.signed_html)."""
    return signed_html(_environment().get_template(TEMPLATE).render(page=page))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("tlcli.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
