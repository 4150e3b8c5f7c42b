"""Exact statistics of types of 16 bits or fewer from their counts per bit pattern."""

from __future__ import annotations

import numpy as np

from reportgen.stats.model import Histogram, TensorStats
from reportgen.stats.moments import (
    Totals,
    empty_stats,
    exact_bins,
    histogram_range,
    make_stats,
    near_zero_mask,
    pick_quantiles,
)


def from_table(tot: Totals, shape: tuple[int, ...], dtype: str, bins: int) -> TensorStats:
    """Finish the stats of a 16-bit-or-narrower tensor from its counts per bit pattern."""
    assert tot.table is not None and tot.dtype is not None
    present = np.flatnonzero(tot.table)
    counts = tot.table[present]
    uint = np.uint8 if tot.dtype.itemsize == 1 else np.uint16
    values = present.astype(uint).view(tot.dtype).astype(np.float64)
    nan = np.isnan(values)
    inf = np.isinf(values)
    tot.nan = int(counts[nan].sum())
    tot.inf = int(counts[inf].sum())
    keep = ~(nan | inf)
    values, counts = values[keep], counts[keep]
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    n = int(counts.sum())
    if n == 0:
        return empty_stats(tot, shape, dtype)
    w = counts.astype(np.float64)
    tot.finite = n
    tot.zeros = int(counts[values == 0].sum())
    tot.lo, tot.hi = float(values[0]), float(values[-1])
    tot.near_zero = int(counts[near_zero_mask(values, tot.near_zero_limit())].sum())
    tot.sum_abs = float(np.dot(w, np.abs(values)))
    mean = float(np.dot(w, values)) / n
    d = values - mean
    e = float(np.dot(w, d)) / n
    d -= e
    wd2 = w * d * d
    tot.mean = mean + e
    tot.m2 = float(wd2.sum())
    tot.m3 = float(np.dot(wd2, d))
    tot.m4 = float(np.dot(wd2, d * d))
    cum = np.cumsum(counts)

    def order_stat(ranks: list[int]) -> dict[int, float]:
        pos = np.searchsorted(cum, np.asarray(ranks), side="right")
        return {k: float(values[p]) for k, p in zip(ranks, pos)}

    first, last = histogram_range(tot.lo, tot.hi)
    edges = np.linspace(first, last, bins + 1)
    hist = np.bincount(exact_bins(values, first, last, edges), weights=w, minlength=bins)
    histogram = Histogram(tuple(edges.tolist()), tuple(round(float(h)) for h in hist))
    return make_stats(tot, shape, dtype, float(np.dot(w, values * values)), pick_quantiles(n, order_stat), histogram)
