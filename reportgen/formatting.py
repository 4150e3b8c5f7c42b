"""Number formatting shared by templates (as Jinja filters) and written findings."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reportgen.thresholds import DISPLAY


def num(value: Any, digits: int = 4) -> str:
    """Format a float with `digits` significant digits; '-' for None, 'NaN'/'Inf' spelled out."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "−Inf"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        text = f"{v:.{digits}g}"
    else:
        text = f"{v:.{max(1, digits - 1)}e}"
    return text.replace("-", "−")


def plain(value: Any, digits: int = 4) -> str:
    """Format like num() with an ASCII minus, for JSON-adjacent text and tests."""
    return num(value, digits).replace("−", "-")


def pct(value: Any, digits: int = 1) -> str:
    """Format a share in [0, 1] as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


def count(value: Any) -> str:
    """Format an integer count with thousands separators."""
    return "–" if value is None else f"{int(value):,}"


def shape(value: Any) -> str:
    """Format a shape tuple as (3, 3, 64, 128); None dims as ?."""
    if value is None:
        return "–"
    return "(" + ", ".join("?" if d is None else str(d) for d in value) + ")"


def ratio(value: Any) -> str:
    """Format a ratio as 3.6x."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "–"
    return f"{float(value):.3g}×"


def pvalue(value: Any) -> str:
    """Format a p-value for people: "p = 0.33", "p < 1e-7", "p < 1e-100"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "p –"
    p = float(value)
    if p < DISPLAY.pvalue_floor:
        return f"p < {DISPLAY.pvalue_floor:g}"
    if p < 1e-3:
        # The next power of ten above p: an upper bound a reader can compare without counting digits.
        return f"p < 1e{math.floor(math.log10(p)) + 1}"
    return f"p = {p:.2g}"


@dataclass(frozen=True)
class StatColumn:
    """One per-tensor statistic of the appendix table: heading, TensorStats attribute, filter, digits."""

    head: str
    field: str
    fmt: str = "num"
    digits: int | None = None


# The appendix's statistic columns, left to right: a new per-tensor statistic is one row here.
STAT_COLUMNS = (
    StatColumn("mean", "mean"),
    StatColumn("std", "std"),
    StatColumn("min", "min"),
    StatColumn("max", "max"),
    StatColumn("median", "median"),
    StatColumn("mean |w|", "mean_abs"),
    StatColumn("zeros", "zero_frac", "pct"),
    StatColumn("near zero", "near_zero_frac", "pct"),
    StatColumn("kurt.", "kurtosis", "num", 3),
)


def stat_cell(stats: Any, col: StatColumn) -> str:
    """Format one column's statistic of a tensor with the column's filter."""
    fmt = FILTERS[col.fmt]
    value = getattr(stats, col.field)
    return fmt(value) if col.digits is None else fmt(value, col.digits)


FILTERS: dict[str, Callable[..., str]] = {
    "pvalue": pvalue,
    "num": num,
    "pct": pct,
    "count": count,
    "shape": shape,
    "ratio": ratio,
    "plain": plain,
}
