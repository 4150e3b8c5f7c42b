"""The summary a Jupyter notebook shows for a report: verdict counts, alerts, no figures, no script."""

from __future__ import annotations

from dataclasses import dataclass

from reportgen.diagnosis import Alert
from reportgen.render.html import make_env
from reportgen.report_model import ReportModel

SHOWN_ALERTS = 8  # the notebook summary lists the most severe few; report.show() has them all


@dataclass(frozen=True)
class ModelRow:
    """One model's line in the summary."""

    name: str
    source: str
    params: int
    at_init: int
    moved: int
    unknown_init: int
    summary: str


@dataclass(frozen=True)
class NotebookSummary:
    """What the notebook summary shows, decided here so the template only lays it out."""

    title: str
    rows: tuple[ModelRow, ...]
    counts: tuple[tuple[str, int], ...]  # (severity, number of alerts)
    alerts: tuple[Alert, ...]
    hidden_alerts: int


def summary_view(report: ReportModel) -> NotebookSummary:
    """Pick the rows, counts and alerts the summary shows."""
    rows = tuple(
        ModelRow(
            m.name,
            m.source.description,
            m.param_count,
            m.diagnosis.at_init,
            m.diagnosis.moved,
            m.diagnosis.unknown_init,
            m.diagnosis.summary,
        )
        for m in report.models
    )
    order = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(report.alerts, key=lambda a: order.get(a.severity, 3))
    return NotebookSummary(
        report.title,
        rows,
        tuple((k, v) for k, v in report.alert_counts().items()),
        tuple(ranked[:SHOWN_ALERTS]),
        max(0, len(ranked) - SHOWN_ALERTS),
    )


def render_summary(report: ReportModel) -> str:
    """Render the summary as an HTML fragment with inline styles only, so sanitised outputs keep it."""
    return make_env().get_template("notebook.html.j2").render(view=summary_view(report))
