"""The typed results of the statistics stage: TensorStats and its histograms."""

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
class ClippedHistogram:
    """Counts in equal-width bins over a readable range, with the values left outside it counted."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    below: int  # finite values under edges[0]
    above: int  # finite values over edges[-1]


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
    near_zero: int  # finite values with |w| <= NEAR_ZERO_REL * max_abs (exact zeros included)
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

    @property
    def near_zero_frac(self) -> float:
        """Share of finite values that are near zero relative to the tensor's largest |w|."""
        return self.near_zero / self.finite if self.finite else float("nan")
