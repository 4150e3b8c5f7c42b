"""Pass 1 (counts, extremes, merged central moments or the bit-pattern table) and the assembly of TensorStats."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from reportgen.errors import SourceError
from reportgen.stats.blocks import (
    Scratch,
    aligned_blocks,
    dot,
)
from reportgen.stats.kernels import count_patterns
from reportgen.stats.model import Histogram, TensorStats
from reportgen.thresholds import NEAR_ZERO_REL

_QUANTILES = (0.01, 0.5, 0.99)  # p01, median, p99: np.percentile(x, [1, 50, 99])


NAN = float("nan")


class Totals:
    """Running results of pass 1 (mutable scratch inside one compute_stats call)."""

    __slots__ = (
        "count",
        "dtype",
        "finite",
        "hi",
        "inf",
        "lo",
        "m2",
        "m3",
        "m4",
        "mean",
        "nan",
        "near_zero",
        "sum_abs",
        "table",
        "zeros",
    )

    def __init__(self) -> None:
        self.dtype: np.dtype | None = None
        self.count = self.finite = self.nan = self.inf = self.zeros = self.near_zero = 0
        self.lo = math.inf
        self.hi = -math.inf
        self.sum_abs = self.mean = self.m2 = self.m3 = self.m4 = 0.0
        self.table: np.ndarray | None = None  # counts per bit pattern, for types of 16 bits or fewer

    def merge(self, n: int, mean: float, m2: float, m3: float, m4: float) -> None:
        """Fold the central moments of n more values into the totals (Chan et al.; Pebay 2008)."""
        na = self.finite
        if na == 0:
            self.finite, self.mean, self.m2, self.m3, self.m4 = n, mean, m2, m3, m4
            return
        nb = n
        tot = na + nb
        d = mean - self.mean
        dn = d / tot
        a, b = float(na), float(nb)
        self.m4 = (
            self.m4
            + m4
            + d * dn**3 * a * b * (a * a - a * b + b * b)
            + 6.0 * dn * dn * (a * a * m2 + b * b * self.m2)
            + 4.0 * dn * (a * m3 - b * self.m3)
        )
        self.m3 = self.m3 + m3 + d * dn * dn * a * b * (a - b) + 3.0 * dn * (a * m2 - b * self.m2)
        self.m2 = self.m2 + m2 + d * dn * a * b
        self.mean += dn * b
        self.finite = tot

    def near_zero_limit(self) -> float:
        """Return the |w| at or below which a value counts as near zero (needs pass 1's extremes)."""
        return NEAR_ZERO_REL * max(abs(self.lo), abs(self.hi))


def near_zero_mask(
    x: np.ndarray, limit: float, tmp: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Mark the float64 values with |x| <= limit: the one near-zero predicate of every path."""
    return np.less_equal(np.abs(x, out=tmp), limit, out=out)


def _table_uint(dt: np.dtype) -> type[np.unsignedinteger] | None:
    """Return the unsigned type whose bit patterns enumerate dt, or None when dt is wider than 16 bits."""
    if (dt.kind == "V" and dt.type.__module__.startswith("ml_dtypes")) or dt.kind in "biuf":
        if dt.itemsize == 1:
            return np.uint8
        if dt.itemsize == 2:
            return np.uint16
        return None
    raise TypeError(f"cannot compute statistics of dtype {dt}")


def first_pass(chunks: Iterator[np.ndarray], block: int, scratch: Scratch) -> Totals:
    """Run pass 1: counts, extremes, sum|x| and merged central moments, or the bit-pattern table."""
    tot = Totals()

    def checked() -> Iterator[np.ndarray]:
        view: type[np.unsignedinteger] | None = None
        for chunk in chunks:
            if tot.dtype is None:
                tot.dtype = chunk.dtype
                view = _table_uint(chunk.dtype)
                if view is not None:
                    tot.table = np.zeros(1 << (8 * chunk.dtype.itemsize), dtype=np.int64)
            elif chunk.dtype != tot.dtype:
                raise SourceError(f"tensor chunks mix dtypes {tot.dtype} and {chunk.dtype}")
            tot.count += chunk.size
            if tot.table is not None and view is not None:
                count_patterns(chunk.reshape(-1).view(view), tot.table)
            else:
                yield chunk

    for piece in aligned_blocks(checked(), block):
        _moments_block(tot, piece, scratch)
    return tot


def _moments_block(tot: Totals, c: np.ndarray, s: Scratch) -> None:
    """Add one block to the pass-1 totals; NaN and Inf are counted and dropped."""
    lo, hi = c.min(), c.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        # min/max propagate NaN and reach Inf, so finite extremes prove the block clean (the usual case).
        keep = np.isfinite(c)
        nan = int(np.count_nonzero(np.isnan(c)))
        fin = int(np.count_nonzero(keep))
        tot.nan += nan
        tot.inf += c.size - fin - nan
        if fin == 0:
            return
        c = c[keep]
        lo, hi = c.min(), c.max()
    n = c.size
    # Comparing first is 3x faster than count_nonzero on a float array.
    is_zero = s.m1[:n]
    np.equal(c, 0, out=is_zero)
    tot.zeros += int(np.count_nonzero(is_zero))
    tot.lo = min(tot.lo, float(lo))
    tot.hi = max(tot.hi, float(hi))
    x, sq, ones = s.x[:n], s.sq[:n], s.ones[:n]
    np.copyto(x, c, casting="unsafe")
    # BLAS ddot beats ndarray.sum by 2x on cache-resident float64.
    mean = dot(x, ones) / n
    np.abs(x, out=sq)
    tot.sum_abs += dot(sq, ones)
    x -= mean
    np.multiply(x, x, out=sq)
    # e is what rounding left of the centring; the shifted-moment identities remove it exactly.
    e = dot(x, ones) / n
    s2 = dot(sq, ones)
    s3 = dot(sq, x)
    s4 = dot(sq, sq)
    m2 = s2 - n * e * e
    m3 = s3 - 3.0 * e * s2 + 2.0 * n * e**3
    m4 = s4 - 4.0 * e * s3 + 6.0 * e * e * s2 - 3.0 * n * e**4
    tot.merge(n, mean + e, max(m2, 0.0), m3, max(m4, 0.0))


def _virtual_indexes(n: int) -> list[tuple[int, int, float]]:
    """Return (previous, next, gamma) per quantile, as np.percentile's 'linear' method picks them."""
    out = []
    for q in _QUANTILES:
        vi = (n - 1) * q
        prev = math.floor(vi)
        gamma = vi - prev
        nxt = prev + 1
        if vi >= n - 1:
            prev = nxt = n - 1
        out.append((prev, nxt, gamma))
    return out


def _lerp(a: float, b: float, t: float) -> float:
    """Interpolate between a and b as numpy's quantile code does, rounding included."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def pick_quantiles(n: int, order_stat: Callable[[list[int]], dict[int, float]]) -> tuple[float, float, float]:
    """Return p01, median, p99 from a function that yields the order statistics of given ranks."""
    picks = _virtual_indexes(n)
    ranks = sorted({k for prev, nxt, _ in picks for k in (prev, nxt)})
    values = order_stat(ranks)
    p01, med, p99 = (_lerp(values[prev], values[nxt], g) for prev, nxt, g in picks)
    return p01, med, p99


def histogram_range(lo: float, hi: float) -> tuple[float, float]:
    """Return the histogram range np.histogram uses for data spanning [lo, hi]."""
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def exact_bins(x: np.ndarray, first: float, last: float, edges: np.ndarray) -> np.ndarray:
    """Return the bin of each float64 value as np.histogram assigns it: edges[i] <= x < edges[i + 1]."""
    bins = edges.size - 1
    idx = ((x - first) / (last - first) * bins).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    idx[x < edges[idx]] -= 1
    idx[(x >= edges[idx + 1]) & (idx != bins - 1)] += 1
    return idx


def to_histogram(edges: np.ndarray, counts: np.ndarray) -> Histogram:
    """Wrap float64 edges and integer counts as a Histogram."""
    return Histogram(tuple(edges.tolist()), tuple(int(c) for c in counts))


def make_stats(
    tot: Totals,
    shape: tuple[int, ...],
    dtype: str,
    l2sq: float,
    quantiles: tuple[float, float, float],
    hist: Histogram,
) -> TensorStats:
    """Assemble TensorStats from finished totals."""
    n = tot.finite
    var = tot.m2 / n
    # scipy.stats.skew/kurtosis call the data constant below this variance and return NaN.
    flat = var <= (np.finfo(np.float64).eps * tot.mean) ** 2
    skew = NAN if flat else (tot.m3 / n) / var**1.5
    kurt = NAN if flat else (tot.m4 / n) / var**2 - 3.0
    p01, med, p99 = quantiles
    return TensorStats(
        shape=shape,
        dtype=dtype,
        count=tot.count,
        finite=n,
        nan=tot.nan,
        inf=tot.inf,
        zeros=tot.zeros,
        near_zero=tot.near_zero,
        mean=tot.mean,
        std=math.sqrt(var),
        var=var,
        min=tot.lo,
        max=tot.hi,
        median=med,
        p01=p01,
        p99=p99,
        mean_abs=tot.sum_abs / n,
        max_abs=max(abs(tot.lo), abs(tot.hi)),
        l2=math.sqrt(l2sq),
        skewness=float(skew),
        kurtosis=float(kurt),
        histogram=hist,
    )


def empty_stats(tot: Totals, shape: tuple[int, ...], dtype: str) -> TensorStats:
    """Return the stats of a tensor without finite values: counts only."""
    nan = NAN
    return TensorStats(
        shape=shape,
        dtype=dtype,
        count=tot.count,
        finite=0,
        nan=tot.nan,
        inf=tot.inf,
        zeros=tot.zeros,
        near_zero=0,
        mean=nan,
        std=nan,
        var=nan,
        min=nan,
        max=nan,
        median=nan,
        p01=nan,
        p99=nan,
        mean_abs=nan,
        max_abs=nan,
        l2=nan,
        skewness=nan,
        kurtosis=nan,
        histogram=None,
    )
