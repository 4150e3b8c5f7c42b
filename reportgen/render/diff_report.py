"""Write a release comparison as diff.html, diff.pdf and diff.json."""

from __future__ import annotations

import json
from typing import Any

from reportgen import __version__
from reportgen.diff import (
    DIFF_SCHEMA_VERSION,
    REL_CHANGE_ALERT,
    STD_RATIO_BAND,
    VERDICT_REGRESSIONS,
    DiffModel,
    ModelDiff,
)
from reportgen.figures import diff_overlays
from reportgen.render.html import render_template
from reportgen.render.json_report import jsonable
from reportgen.render.pdf import render_pdf

# diff.json, schema_version 1.0 (keys sorted, NaN/Inf written as null):
#   schema_version, tool {name, version}
#   old, new: {label, title, generated_at, schema_version (as read), model_count}
#   thresholds: {std_ratio_band [lo, hi], rel_change_alert, verdict_regressions [[old, new]]}
#   models[]: {name, old_name, new_name, added_layers[], removed_layers[], retyped_layers[[layer, old, new]],
#              added_tensors[] / removed_tensors[] / reshaped_tensors[]: {layer, param, old_shape, new_shape},
#              tensors[]: TensorDiff fields, verdict_changes[]: {layer, old, new, regression},
#              weights_compared (count), weights_note, top[[layer, param]] (most changed first)}
#   unmatched_models: {old[], new[]}
#   alerts[]: {severity, code, model, layer, param, message}


def diff_document(diff: DiffModel) -> dict[str, Any]:
    """Build the diff.json document (histograms stay in the two stats.json files)."""

    def model(m: ModelDiff) -> dict[str, Any]:
        d = jsonable(m)
        d["name"] = m.name
        d["top"] = [[t.layer, t.param] for t in m.top()]
        return d

    return {
        "schema_version": DIFF_SCHEMA_VERSION,
        "tool": {"name": "reportgen", "version": __version__},
        "old": jsonable(diff.old),
        "new": jsonable(diff.new),
        "thresholds": {
            "std_ratio_band": list(STD_RATIO_BAND),
            "rel_change_alert": REL_CHANGE_ALERT,
            "verdict_regressions": sorted(list(r) for r in VERDICT_REGRESSIONS),
        },
        "models": [model(m) for m in diff.models],
        "unmatched_models": {"old": list(diff.unmatched_old), "new": list(diff.unmatched_new)},
        "alerts": jsonable(list(diff.alerts)),
    }


def render_html_diff(diff: DiffModel, *, for_pdf: bool = False) -> str:
    """Render diff.html: the main report's template base, CSS and CSP."""
    return render_template(
        "diff.html.j2",
        diff=diff,
        figures=list(diff_overlays(diff).values()),
        for_pdf=for_pdf,
        thresholds={"std_lo": STD_RATIO_BAND[0], "std_hi": STD_RATIO_BAND[1], "rel": REL_CHANGE_ALERT},
    )


def render_diff(diff: DiffModel, formats: tuple[str, ...]) -> dict[str, bytes]:
    """Render the requested formats to {"diff.html", "diff.pdf", "diff.json"} bytes."""
    out: dict[str, bytes] = {}
    if "html" in formats:
        out["diff.html"] = render_html_diff(diff).encode("utf-8")
    if "pdf" in formats:
        out["diff.pdf"] = render_pdf(render_html_diff(diff, for_pdf=True))
    if "json" in formats:
        doc = diff_document(diff)
        out["diff.json"] = (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    return out
