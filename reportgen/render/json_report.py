"""Write stats.json (its document is defined in reportgen/stats_json.py) and turn dataclasses into JSON values."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from reportgen.report_model import ReportModel
from reportgen.stats_json import dumps, stats_document

# Arrays that are plotting data, not statistics; they stay out of the archives.
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


def render_json(report: ReportModel) -> str:
    """Serialise the report's stats.json document deterministically (sorted keys, no NaN)."""
    return dumps(stats_document(report))
