"""Write a release history as history.html, history.pdf and history.json."""

from __future__ import annotations

import math
from typing import Any

from reportgen import __version__
from reportgen.figures import FigureData
from reportgen.history import HISTORY_SCHEMA_VERSION, MOVES_NAMED, HistoryModel, LayerSeries, ModelHistory
from reportgen.render.html import render_template
from reportgen.render.json_report import jsonable
from reportgen.render.outputs import render_outputs
from reportgen.render.release_figures import history_figures
from reportgen.thresholds import RELEASES

# Layer rows in the PDF's table at most (about one page); the HTML and history.json hold every layer.
PDF_LAYER_ROWS = 40

# history.json, schema_version 1.0 (keys sorted, NaN/Inf written as null):
#   schema_version, tool {name, version}, thresholds {history_move}
#   releases[]: {index, name, path, title, generated_at, tool_version, schema_version}
#   models[]: {name, names[] (per release, null where absent), first_wrong (release index or null),
#              layers[]: {layer, class_name, param, present[], std_init[], mean_abs[], verdicts[],
#                         alerts[][]: {severity, code, param, message}, nonfinite[]}  (one entry per release),
#              moves[]: {layer, to_release, size (null: a verdict change or NaN appearing), what},
#              problems[]: {layer, param, severity, code, message, first, last, persists}}


def history_document(h: HistoryModel) -> dict[str, Any]:
    """Build the history.json document."""
    return {
        "schema_version": HISTORY_SCHEMA_VERSION,
        "tool": {"name": "reportgen", "version": __version__},
        "thresholds": {"history_move": RELEASES.history_move},
        "releases": jsonable(list(h.releases)),
        "models": jsonable(list(h.models)),
    }


def _changed(s: LayerSeries, moved: set[str], problems: set[str]) -> bool:
    return s.layer in moved or s.layer in problems


def _span(values: tuple[float | None, ...]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return (min(known), max(known)) if known else (None, None)


def _rows(m: ModelHistory, all_layers: bool) -> list[dict[str, Any]]:
    """Return the layer table's rows: every layer, or those that moved or had a problem."""
    moved = {mv.layer for mv in m.moves}
    problems = {p.layer for p in m.problems}
    first_problem: dict[str, int] = {}
    for p in m.problems:
        first_problem.setdefault(p.layer, p.first)
    rows = []
    for s in m.layers:
        if not all_layers and not _changed(s, moved, problems):
            continue
        present = [i for i, x in enumerate(s.present) if x]
        rows.append(
            {
                "s": s,
                "first": s.std_init[present[0]] if present else None,
                "last": s.std_init[present[-1]] if present else None,
                "span": _span(s.std_init),
                "abs_first": s.mean_abs[present[0]] if present else None,
                "abs_last": s.mean_abs[present[-1]] if present else None,
                "v_first": s.verdicts[present[0]] if present else None,
                "v_last": s.verdicts[present[-1]] if present else None,
                "moves": sum(mv.layer == s.layer for mv in m.moves),
                "problem": first_problem.get(s.layer),
            }
        )
    return rows


def _first_rows(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """Keep the layers with problems first, then those that moved most often, at most limit of them."""
    if limit is None or len(rows) <= limit:
        return rows
    ranked = sorted(rows, key=lambda r: (r["problem"] is None, -r["moves"]))[:limit]
    keep = {id(r) for r in ranked}
    return [r for r in rows if id(r) in keep]


def _steps(h: HistoryModel, m: ModelHistory) -> list[dict[str, Any]]:
    """Return one row per step between releases (quiet runs merged): how many layers moved, the biggest."""
    out: list[dict[str, Any]] = []
    for r in range(1, len(h.releases)):
        moves = m.moves_at(r)
        if not moves and out and out[-1]["count"] == 0:
            out[-1]["to"] = r  # a run of quiet steps is one row
            continue
        named, more = moves[:MOVES_NAMED], max(0, len(moves) - MOVES_NAMED)
        out.append({"from": r - 1, "to": r, "count": len(moves), "named": named, "more": more})
    return out


def render_html_history(h: HistoryModel, figures: dict[str, list[FigureData]], *, for_pdf: bool = False) -> str:
    """Render history.html (for_pdf: the PDF's variant, without the full layer tables)."""
    models = [
        {
            "m": m,
            "figures": figures.get(m.name, []),
            "rows": _first_rows(_rows(m, all_layers=False), PDF_LAYER_ROWS if for_pdf else None),
            "row_total": len(_rows(m, all_layers=False)),
            "all_rows": [] if for_pdf else _rows(m, all_layers=True),
            "steps": _steps(h, m),
        }
        for m in h.models
    ]
    return render_template("history.html.j2", history=h, models=models, for_pdf=for_pdf, move=RELEASES.history_move)


def render_history(h: HistoryModel, formats: tuple[str, ...]) -> dict[str, bytes]:
    """Render the requested formats to {"history.html", "history.pdf", "history.json"} bytes."""
    figures = history_figures(h) if "html" in formats or "pdf" in formats else {}
    return render_outputs(
        "history",
        formats,
        lambda for_pdf: render_html_history(h, figures, for_pdf=for_pdf),
        lambda: history_document(h),
    )
