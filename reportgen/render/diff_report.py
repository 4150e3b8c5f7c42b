"""Write a release comparison as diff.html, diff.pdf and diff.json."""

from __future__ import annotations

from typing import Any

from reportgen import __version__
from reportgen.diff import DIFF_SCHEMA_VERSION, SEVERITY_ORDER, VERDICT_REGRESSIONS, DiffModel, ModelDiff
from reportgen.figures import FigureData
from reportgen.render.html import render_template
from reportgen.render.json_report import jsonable
from reportgen.render.outputs import render_outputs
from reportgen.render.release_figures import diff_overlays
from reportgen.stats_json import AlertDoc
from reportgen.thresholds import RELEASES

# diff.json, schema_version 1.1 (keys sorted, NaN/Inf written as null):
#   schema_version, tool {name, version}
#   old, new: {name, path, title, generated_at, tool_version, schema_version (as read), model_count}
#   thresholds: {std_ratio_band [lo, hi], rel_change_alert, verdict_regressions [[old, new]]}
#   summary: {tensors, changed, unchanged, verdict_changes, regressions, alerts {critical, warning, info},
#             new_alerts, resolved_alerts}
#   models[]: {name, old_name, new_name, added_layers[], removed_layers[], retyped_layers[[layer, old, new]],
#              added_tensors[] / removed_tensors[] / reshaped_tensors[]: {layer, param, old_shape, new_shape},
#              tensors[]: TensorDiff fields (changed: bool), verdict_changes[]: {layer, old, new, regression},
#              weights_compared (count), weights_note, unchanged (count), top[[layer, param]] (biggest first)}
#   unmatched_models: {old[], new[]}
#   alerts[]: {severity, code, model, layer, param, message}
#   new_alerts[] / resolved_alerts[]: the build alerts of stats.json {code, severity, model, layer, param, message}
#   figures[]: {model, layer, param, why} (the tensors drawn in diff.html and diff.pdf)
# 1.1 added summary, new_alerts, resolved_alerts, figures, tensors[].changed, models[].unchanged and the
# old/new fields name, path and tool_version (label became name and path).


def _alert(a: AlertDoc) -> dict[str, Any]:
    return a.model_dump(include={"code", "severity", "model", "layer", "param", "message"})


def diff_document(diff: DiffModel) -> dict[str, Any]:
    """Build the diff.json document (histograms stay in the two stats.json files)."""

    def model(m: ModelDiff) -> dict[str, Any]:
        d = jsonable(m)
        d["name"] = m.name
        d["unchanged"] = m.unchanged_count
        d["top"] = [[t.layer, t.param] for t in m.top()]
        return d

    changes = [v for m in diff.models for v in m.verdict_changes]
    return {
        "schema_version": DIFF_SCHEMA_VERSION,
        "tool": {"name": "reportgen", "version": __version__},
        "old": jsonable(diff.old),
        "new": jsonable(diff.new),
        "thresholds": {
            "std_ratio_band": list(RELEASES.std_ratio_band),
            "rel_change_alert": RELEASES.rel_change_alert,
            "verdict_regressions": sorted(list(r) for r in VERDICT_REGRESSIONS),
        },
        "summary": {
            "tensors": diff.tensor_count,
            "changed": diff.changed_count,
            "unchanged": diff.tensor_count - diff.changed_count,
            "verdict_changes": len(changes),
            "regressions": sum(v.regression for v in changes),
            "alerts": diff.alert_counts(),
            "new_alerts": len(diff.new_alerts),
            "resolved_alerts": len(diff.resolved_alerts),
        },
        "models": [model(m) for m in diff.models],
        "unmatched_models": {"old": list(diff.unmatched_old), "new": list(diff.unmatched_new)},
        "alerts": jsonable(list(diff.alerts)),
        "new_alerts": [_alert(a) for a in diff.new_alerts],
        "resolved_alerts": [_alert(a) for a in diff.resolved_alerts],
        "figures": [{"model": o.model, "layer": o.layer, "param": o.param, "why": o.why} for o in diff.overlays],
    }


def render_html_diff(diff: DiffModel, figures: list[FigureData] | None = None, *, for_pdf: bool = False) -> str:
    """Render diff.html: the main report's template base, CSS and CSP."""
    figures = diff_overlays(diff) if figures is None else figures
    verdict_rows = [(m.name, v) for m in diff.models for v in m.verdict_changes]
    verdict_rows.sort(key=lambda row: not row[1].regression)
    lo, hi = RELEASES.std_ratio_band
    return render_template(
        "diff.html.j2",
        diff=diff,
        figures=list(zip(figures, (o.why for o in diff.overlays), strict=True)),
        verdict_rows=verdict_rows,
        regressions=sum(v.regression for _, v in verdict_rows),
        renamed=[m.name for m in diff.models if m.old_name != m.new_name],
        structure=bool(diff.unmatched_old or diff.unmatched_new or any(m.structure_changed for m in diff.models)),
        severity_rank={s: i for i, s in enumerate(SEVERITY_ORDER)},
        for_pdf=for_pdf,
        thresholds={"std_lo": lo, "std_hi": hi, "rel": RELEASES.rel_change_alert},
    )


def render_diff(diff: DiffModel, formats: tuple[str, ...]) -> dict[str, bytes]:
    """Render the requested formats to {"diff.html", "diff.pdf", "diff.json"} bytes."""
    figures = diff_overlays(diff) if "html" in formats or "pdf" in formats else []
    return render_outputs(
        "diff", formats, lambda for_pdf: render_html_diff(diff, figures, for_pdf=for_pdf), lambda: diff_document(diff)
    )
