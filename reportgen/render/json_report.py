"""Write stats.json: every number of every tensor, in a documented, versioned structure."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from reportgen import __version__
from reportgen.report_model import ModelView, ReportModel

SCHEMA_VERSION = "1.0"
# Arrays that are plotting data, not statistics; they stay out of the archive.
_SKIP_FIELDS = {"evals", "spec"}


def jsonable(obj: Any) -> Any:
    """Convert dataclasses, tuples and numpy scalars to JSON values; NaN and Inf become null."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in _SKIP_FIELDS}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    return obj


def _init_block(a: Any) -> dict[str, Any] | None:
    d = a.init
    if d is None:
        return None
    return {
        "kind": d.spec.kind,
        "origin": d.spec.origin,
        "family": d.family,
        "fan_in": d.fan_in,
        "fan_out": d.fan_out,
        "scale": jsonable(d.scale),
        "limit": jsonable(d.limit),
        "std": jsonable(d.std),
        "mean": jsonable(d.mean),
    }


def _model(m: ModelView) -> dict[str, Any]:
    verdicts = {v.layer: jsonable(v) for v in m.diagnosis.verdicts}
    layers = []
    for layer in m.layers:
        params = []
        for p in layer.params:
            a = m.analysis(layer.name, p.name)
            entry: dict[str, Any] = {
                "name": p.name,
                "role": p.role,
                "shape": list(p.shape),
                "dtype": p.dtype,
                "key": p.key,
            }
            if p.quant:
                entry["quant"] = {k: jsonable(v) for k, v in p.quant}
            if a is not None:
                stats = jsonable(a.stats)
                stats["zero_frac"] = jsonable(a.stats.zero_frac)
                stats["near_zero_frac"] = jsonable(a.stats.near_zero_frac)
                entry.update(
                    stats=stats,
                    init=_init_block(a),
                    init_check=jsonable(a.init_check),
                    spectral=jsonable(a.spectral),
                    dead_units=a.dead_units,
                    units=a.units,
                )
            params.append(entry)
        layers.append(
            {
                "index": layer.index,
                "name": layer.name,
                "class_name": layer.class_name,
                "type_source": layer.type_source,
                "path": layer.path,
                "output_shape": jsonable(layer.output_shape),
                "param_count": layer.param_count,
                "feeds": list(layer.feeds),
                "verdict": verdicts.get(layer.name),
                "params": params,
            }
        )
    diag = m.diagnosis
    return {
        "name": m.name,
        "source": {
            "format": m.source.format,
            "description": m.source.description,
            "trained": m.source.trained,
            "files": [jsonable(f) for f in m.files],
        },
        "init_statement": m.init_statement,
        "param_count": m.param_count,
        "layer_count": len(m.layers),
        "summary": diag.summary,
        "looks_trained": diag.looks_trained,
        "selected": [
            {
                "layer": v.selected.layer.name,
                "label": v.selected.label,
                "selector": v.selected.selector,
                "params": [a.param for a in v.analyses],
            }
            for v in m.selected
        ],
        "layers": layers,
    }


def stats_document(report: ReportModel) -> dict[str, Any]:
    """Build the stats.json document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "reportgen", "version": __version__},
        "title": report.title,
        "generated_at": report.generated_at,
        "config": {"name": report.config_name, "sha256": report.config_sha256},
        "options": jsonable(report.options),
        "models": [_model(m) for m in report.models],
        "alerts": jsonable(list(report.alerts)),
        "findings": [jsonable(f) for f in report.findings],
    }


def render_json(report: ReportModel) -> str:
    """Serialise stats.json deterministically (sorted keys, no NaN)."""
    return json.dumps(stats_document(report), indent=1, sort_keys=True, allow_nan=False) + "\n"
