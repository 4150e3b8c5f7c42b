"""Per-tensor statistics, accumulated in float64 over chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

ChunkFactory = Callable[[], Iterable[np.ndarray]]


@dataclass(frozen=True)
class Histogram:
    """Counts of finite values in equal-width bins between edges[0] and edges[-1]."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class TensorStats:
    """Summary numbers of one tensor. Float fields are NaN where undefined (e.g. empty tensor)."""

    shape: tuple[int, ...]
    dtype: str
    count: int  # all elements
    finite: int  # elements that are neither NaN nor +-Inf; moments use only these
    nan: int
    inf: int
    zeros: int  # exact zeros
    mean: float
    std: float  # population (ddof=0), as np.std
    var: float
    min: float
    max: float
    median: float
    p01: float  # 1st percentile (linear interpolation, as np.percentile)
    p99: float
    mean_abs: float
    max_abs: float
    l2: float  # sqrt of the sum of squares
    skewness: float  # Fisher-Pearson g1, as scipy.stats.skew(bias=True)
    kurtosis: float  # excess kurtosis g2, as scipy.stats.kurtosis(fisher=True, bias=True)
    histogram: Histogram | None

    @property
    def zero_frac(self) -> float:
        """Share of elements that are exactly zero."""
        return self.zeros / self.count if self.count else float("nan")


def compute_stats(
    data: np.ndarray | ChunkFactory,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | None = None,
    bins: int = 60,
) -> TensorStats:
    """Compute TensorStats from an array or from a factory of 1-D chunks (called at most twice)."""
    if isinstance(data, np.ndarray):
        arr = data
        shape = tuple(arr.shape) if shape is None else shape
        dtype = str(arr.dtype) if dtype is None else dtype
        flat = arr.reshape(-1)
    else:
        flat = np.concatenate([np.asarray(c).reshape(-1) for c in data()] or [np.zeros(0)])
        shape = shape if shape is not None else (flat.size,)
        dtype = dtype or str(flat.dtype)
    x = flat.astype(np.float64)
    count = int(x.size)
    nan = int(np.isnan(x).sum())
    inf = int(np.isinf(x).sum())
    zeros = int((x == 0).sum())
    f = x[np.isfinite(x)]
    n = f.size
    if n == 0:
        nanv = float("nan")
        return TensorStats(shape, dtype, count, 0, nan, inf, zeros, *([nanv] * 12), None)
    mean = float(f.mean())
    d = f - mean
    m2 = float((d * d).mean())
    m3 = float((d**3).mean())
    m4 = float((d**4).mean())
    skew = m3 / m2**1.5 if m2 > 0 else float("nan")
    kurt = m4 / m2**2 - 3.0 if m2 > 0 else float("nan")
    lo, hi = float(f.min()), float(f.max())
    counts, edges = np.histogram(f, bins=bins, range=(lo, hi) if hi > lo else (lo - 0.5, hi + 0.5))
    p01, med, p99 = (float(v) for v in np.percentile(f, [1, 50, 99]))
    return TensorStats(
        shape=shape,
        dtype=dtype,
        count=count,
        finite=int(n),
        nan=nan,
        inf=inf,
        zeros=zeros,
        mean=mean,
        std=m2**0.5,
        var=m2,
        min=lo,
        max=hi,
        median=med,
        p01=p01,
        p99=p99,
        mean_abs=float(np.abs(f).mean()),
        max_abs=max(abs(lo), abs(hi)),
        l2=float(np.sqrt((f * f).sum())),
        skewness=skew,
        kurtosis=kurt,
        histogram=Histogram(tuple(float(e) for e in edges), tuple(int(c) for c in counts)),
    )
