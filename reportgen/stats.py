"""Per-tensor statistics, accumulated in float64 over cache-sized blocks in at most three passes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from reportgen.errors import SourceError
from reportgen.thresholds import NEAR_ZERO_REL

ChunkFactory = Callable[[], Iterable[np.ndarray]]

# Elements per block of the float32/float64 passes: the float64 scratch blocks (512 KiB each) stay in
# L2. Measured with bench/stats_bench.py --blocks over the VGG-16 shapes, seconds for 16/64/256 Ki
# blocks: AMD EPYC 1.06/0.80/0.70, Intel Xeon (4 MiB L2) 1.30/1.08/1.55. Smaller blocks cost Python
# calls, larger ones leave L2; 64 Ki is the best compromise on both.
DEFAULT_BLOCK = 1 << 16
# Up to this many finite values the quantiles come from np.partition on a gathered float64 copy. Above
# it a fine histogram and a third pass are faster: np.partition costs ~15 ns per value, the pass ~1 ns,
# after ~1.3 ms of fixed cost (measured float32 normal: 64 Ki 3.7 ms either way, 1 Mi 36 ms vs 8 ms).
DEFAULT_SELECT_MAX = 1 << 16
# Elements per block of the value-table pass: bincount's intp copy of a block is 2 MiB.
_TABLE_BLOCK = 1 << 18
# np.dot hands long vectors to OpenBLAS, which threads ddot above 10000 elements; its spinning workers then
# fight the caller (and any other worker thread) for cores. Rows of 8192 keep every ddot single-threaded.
_DOT_ROW = 8192
# A few histogram edges that values of the type may straddle are counted by value; more are re-binned.
_MAX_EDGE_CHECKS = 4
# About this many fine bins for locating order statistics; the counts stay L2-resident.
_FINE_TARGET = 8192
_QUANTILES = (0.01, 0.5, 0.99)  # p01, median, p99: np.percentile(x, [1, 50, 99])
_NAN = float("nan")


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


class _Totals:
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


def _near_zero(x: np.ndarray, limit: float, tmp: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Mark the float64 values with |x| <= limit: the one near-zero predicate of every path."""
    return np.less_equal(np.abs(x, out=tmp), limit, out=out)


class _Scratch:
    """Preallocated float64 and index buffers of one block, reused by every pass."""

    def __init__(self, size: int) -> None:
        self.x = np.empty(size)
        self.sq = np.empty(size)
        self.ones = np.ones(size)
        self.idx = np.empty(size, dtype=np.int32)
        self.idx2 = np.empty(size, dtype=np.int32)
        self.m1 = np.empty(size, dtype=bool)
        self.m2 = np.empty(size, dtype=bool)
        self.m3 = np.empty(size, dtype=bool)


def compute_stats(
    data: np.ndarray | ChunkFactory,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | None = None,
    bins: int = 60,
    block: int = DEFAULT_BLOCK,
    select_max: int = DEFAULT_SELECT_MAX,
) -> TensorStats:
    """Compute TensorStats from an array or from a factory of 1-D chunks (called at most three times).

    Types of 16 bits or fewer (bool, int8/16, uint8/16, float16, bfloat16, float8) take one pass that
    counts bit patterns; every number then comes exactly from that table of values and counts.

    Other types take pass 1 over blocks of `block` elements: counts, min/max, sum|x| and the mean and
    central moments M2..M4 of each block in float64, merged with the pairwise update of Chan/Pebay.
    Pass 2 bins the finite values arithmetically (index = (x - min) * scale, then np.bincount), the
    same counts as np.histogram: the few values that can sit within rounding of an interior edge are
    re-binned against the float64 edges, and only when the edges lie that close to values of the type.
    Quantiles are exact, np.percentile's linear interpolation between order statistics. With at most
    `select_max` finite values pass 2 gathers them and np.partition selects the order statistics. With
    more, pass 2 counts `bins * K` fine bins instead (each histogram bin split in K); the cumulative
    counts name the fine bins that hold the order statistics, and pass 3 gathers only the values in
    those bins (found by value thresholds) and partitions them, so memory stays bounded by those bins.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    chunks = flat_pieces(data)
    size = None
    if isinstance(data, np.ndarray):
        shape = tuple(data.shape) if shape is None else tuple(shape)
        size = data.size
    scratch_size = max(1, min(block, size)) if size is not None else block
    scratch = _Scratch(scratch_size)
    tot = _first_pass(chunks(), block, scratch)
    shape = (tot.count,) if shape is None else shape
    dtype = dtype if dtype is not None else str(tot.dtype if tot.dtype is not None else np.dtype(np.float64))
    if tot.table is not None:
        return _from_table(tot, shape, dtype, bins)
    return _from_passes(tot, shape, dtype, bins, chunks, block, select_max, scratch)


def flat_pieces(values: np.ndarray | ChunkFactory, max_elems: int | None = None) -> Callable[[], Iterator[np.ndarray]]:
    """Return a function yielding the values, an array or a chunk factory's output, as 1-D pieces.

    An array is one piece; with max_elems every piece is cut to at most that many elements.
    """

    def pieces() -> Iterator[np.ndarray]:
        chunks = (values,) if isinstance(values, np.ndarray) else values()
        flat = (np.asarray(c).reshape(-1) for c in chunks)
        yield from flat if max_elems is None else _blocks(flat, max_elems)

    return pieces


def _blocks(chunks: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Yield every chunk cut into pieces of at most block elements."""
    for chunk in chunks:
        for start in range(0, chunk.size, block):
            yield chunk[start : start + block]


def _table_uint(dt: np.dtype) -> type[np.unsignedinteger] | None:
    """Return the unsigned type whose bit patterns enumerate dt, or None when dt is wider than 16 bits."""
    if (dt.kind == "V" and dt.type.__module__.startswith("ml_dtypes")) or dt.kind in "biuf":
        if dt.itemsize == 1:
            return np.uint8
        if dt.itemsize == 2:
            return np.uint16
        return None
    raise TypeError(f"cannot compute statistics of dtype {dt}")


def _first_pass(chunks: Iterator[np.ndarray], block: int, scratch: _Scratch) -> _Totals:
    """Run pass 1: counts, extremes, sum|x| and merged central moments, or the bit-pattern table."""
    tot = _Totals()

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
                for piece in _blocks((chunk,), _TABLE_BLOCK):
                    tot.table += np.bincount(piece.view(view), minlength=tot.table.size)
            else:
                yield chunk

    for piece in aligned_blocks(checked(), block):
        _moments_block(tot, piece, scratch)
    return tot


def aligned_blocks(chunks: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Yield the values of all chunks cut at every multiple of block elements of the whole stream.

    The moments are summed block by block, so fixed block boundaries make every number the same
    however the source happens to cut its chunks (pieces that straddle a boundary are copied).
    """
    carry: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        start = 0
        if have:
            start = min(block - have, chunk.size)
            carry.append(chunk[:start])
            have += start
            if have < block:
                continue
            yield np.concatenate(carry)
            carry, have = [], 0
        full = (chunk.size - start) // block
        for i in range(full):
            yield chunk[start + i * block : start + (i + 1) * block]
        rest = chunk[start + full * block :]
        if rest.size:
            carry, have = [rest], rest.size
    if have:
        yield np.concatenate(carry)


def _moments_block(tot: _Totals, c: np.ndarray, s: _Scratch) -> None:
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
    mean = _dot(x, ones) / n
    np.abs(x, out=sq)
    tot.sum_abs += _dot(sq, ones)
    x -= mean
    np.multiply(x, x, out=sq)
    # e is what rounding left of the centring; the shifted-moment identities remove it exactly.
    e = _dot(x, ones) / n
    s2 = _dot(sq, ones)
    s3 = _dot(sq, x)
    s4 = _dot(sq, sq)
    m2 = s2 - n * e * e
    m3 = s3 - 3.0 * e * s2 + 2.0 * n * e**3
    m4 = s4 - 4.0 * e * s3 + 6.0 * e * e * s2 - 3.0 * n * e**4
    tot.merge(n, mean + e, max(m2, 0.0), m3, max(m4, 0.0))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Return the float64 dot product of two contiguous vectors with single-threaded BLAS calls."""
    n = a.size
    m = n - n % _DOT_ROW
    total = float(np.vecdot(a[:m].reshape(-1, _DOT_ROW), b[:m].reshape(-1, _DOT_ROW)).sum()) if m else 0.0
    return total + float(np.dot(a[m:], b[m:])) if m < n else total


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


def _quantiles(n: int, order_stat: Callable[[list[int]], dict[int, float]]) -> tuple[float, float, float]:
    """Return p01, median, p99 from a function that yields the order statistics of given ranks."""
    picks = _virtual_indexes(n)
    ranks = sorted({k for prev, nxt, _ in picks for k in (prev, nxt)})
    values = order_stat(ranks)
    p01, med, p99 = (_lerp(values[prev], values[nxt], g) for prev, nxt, g in picks)
    return p01, med, p99


def _histogram_range(lo: float, hi: float) -> tuple[float, float]:
    """Return the histogram range np.histogram uses for data spanning [lo, hi]."""
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _exact_bins(x: np.ndarray, first: float, last: float, edges: np.ndarray) -> np.ndarray:
    """Return the bin of each float64 value as np.histogram assigns it: edges[i] <= x < edges[i + 1]."""
    bins = edges.size - 1
    idx = ((x - first) / (last - first) * bins).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    idx[x < edges[idx]] -= 1
    idx[(x >= edges[idx + 1]) & (idx != bins - 1)] += 1
    return idx


def _make_stats(
    tot: _Totals,
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
    skew = _NAN if flat else (tot.m3 / n) / var**1.5
    kurt = _NAN if flat else (tot.m4 / n) / var**2 - 3.0
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


def _empty_stats(tot: _Totals, shape: tuple[int, ...], dtype: str) -> TensorStats:
    """Return the stats of a tensor without finite values: counts only."""
    nan = _NAN
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


def _from_table(tot: _Totals, shape: tuple[int, ...], dtype: str, bins: int) -> TensorStats:
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
        return _empty_stats(tot, shape, dtype)
    w = counts.astype(np.float64)
    tot.finite = n
    tot.zeros = int(counts[values == 0].sum())
    tot.lo, tot.hi = float(values[0]), float(values[-1])
    tot.near_zero = int(counts[_near_zero(values, tot.near_zero_limit())].sum())
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

    first, last = _histogram_range(tot.lo, tot.hi)
    edges = np.linspace(first, last, bins + 1)
    hist = np.bincount(_exact_bins(values, first, last, edges), weights=w, minlength=bins)
    histogram = Histogram(tuple(edges.tolist()), tuple(round(float(h)) for h in hist))
    return _make_stats(tot, shape, dtype, float(np.dot(w, values * values)), _quantiles(n, order_stat), histogram)


def _from_passes(
    tot: _Totals,
    shape: tuple[int, ...],
    dtype: str,
    bins: int,
    chunks: Callable[[], Iterator[np.ndarray]],
    block: int,
    select_max: int,
    scratch: _Scratch,
) -> TensorStats:
    """Finish the stats of a float32/float64/wide-integer tensor with passes 2 and 3 as needed."""
    n = tot.finite
    if n == 0:
        return _empty_stats(tot, shape, dtype)
    lo, hi = tot.lo, tot.hi
    # L2 from the moments: both terms are positive, so nothing cancels.
    l2sq = tot.m2 + n * tot.mean * tot.mean
    first, last = _histogram_range(lo, hi)
    edges = np.linspace(first, last, bins + 1)
    if lo == hi:
        tot.near_zero = n * int(_near_zero(np.array([lo]), tot.near_zero_limit())[0])
        tot.mean, tot.m2, tot.m3, tot.m4 = lo, 0.0, 0.0, 0.0
        counts = np.zeros(bins, dtype=np.int64)
        counts[_exact_bins(np.array([lo]), first, last, edges)[0]] = n
        return _make_stats(tot, shape, dtype, n * lo * lo, (lo, lo, lo), _hist(edges, counts))
    scale = bins / (hi - lo)

    def blocks() -> Iterator[np.ndarray]:
        return _finite_blocks(_blocks(chunks(), block), tot.nan + tot.inf > 0)

    if n <= select_max or not math.isfinite(scale) or not math.isfinite(scale * _FINE_TARGET):
        values = np.empty(n)
        pos = 0
        for c in blocks():
            if pos + c.size > n:
                raise SourceError("tensor chunks changed between reads")
            np.copyto(values[pos : pos + c.size], c, casting="unsafe")
            pos += c.size
        if pos != n:
            raise SourceError("tensor chunks changed between reads")
        counts = np.bincount(_exact_bins(values, first, last, edges), minlength=bins)
        tot.near_zero = int(np.count_nonzero(_near_zero(values, tot.near_zero_limit())))

        def gathered(ranks: list[int]) -> dict[int, float]:
            part = np.partition(values, ranks)
            return {k: float(part[k]) for k in ranks}

        return _make_stats(tot, shape, dtype, l2sq, _quantiles(n, gathered), _hist(edges, counts))
    counts, fine, grid = _fine_pass(blocks, tot, edges, scratch)
    quantiles = _quantiles(n, lambda ranks: _select_pass(blocks, fine, grid, ranks, scratch))
    return _make_stats(tot, shape, dtype, l2sq, quantiles, _hist(edges, counts))


def _hist(edges: np.ndarray, counts: np.ndarray) -> Histogram:
    """Wrap float64 edges and integer counts as a Histogram."""
    return Histogram(tuple(edges.tolist()), tuple(int(c) for c in counts))


def _finite_blocks(blocks: Iterator[np.ndarray], dirty: bool) -> Iterator[np.ndarray]:
    """Yield blocks without their NaN and Inf values (checked only when pass 1 saw any)."""
    for c in blocks:
        if dirty and not (np.isfinite(c.min()) and np.isfinite(c.max())):
            c = c[np.isfinite(c)]
        if c.size:
            yield c


@dataclass(frozen=True)
class _Grid:
    """The fine binning of pass 2: fine(x) = min(trunc((float64(x) - lo) * scale), size - 1)."""

    lo: float
    hi: float
    scale: float
    size: int
    per_bin: int  # fine bins per histogram bin, a power of two
    domain: np.dtype  # float32 or float64: the values x can take, for value thresholds

    def index(self, x: np.ndarray) -> np.ndarray:
        """Return the fine bin of each float64 value, with the arithmetic of pass 2."""
        t = (x - self.lo) * self.scale
        return np.minimum(np.trunc(t), self.size - 1).astype(np.int64)

    def thresholds(self, targets: np.ndarray) -> np.ndarray:
        """Return, per fine bin, the least value of the domain in it or above it (+inf past the end)."""
        key_lo = _keys(np.array([self.lo]), self.domain)[0]
        key_hi = _keys(np.array([self.hi]), self.domain)[0]
        left = np.full(targets.size, key_lo, dtype=np.int64)
        right = np.full(targets.size, key_hi + 1, dtype=np.int64)
        # Bisection over the ordered bit patterns of the domain, all targets at once: at most 64 steps.
        while True:
            open_ = left < right
            if not open_.any():
                break
            # floor((left + right) / 2) without the int64 overflow of a range spanning both signs
            mid = (left >> 1) + (right >> 1) + (left & right & 1)
            above = self.index(_from_keys(np.where(open_, mid, key_lo), self.domain)) >= targets
            right = np.where(open_ & above, mid, right)
            left = np.where(open_ & ~above, mid + 1, left)
        out = _from_keys(np.minimum(left, key_hi), self.domain)
        out[left > key_hi] = np.inf
        return out


def _keys(v: np.ndarray, domain: np.dtype) -> np.ndarray:
    """Map float values of the domain to int64 keys in the same order."""
    bits = v.astype(domain).view(np.int32 if domain.itemsize == 4 else np.int64).astype(np.int64)
    mag = bits & (0x7FFFFFFF if domain.itemsize == 4 else 0x7FFFFFFFFFFFFFFF)
    return np.where(bits < 0, -mag - 1, bits)


def _from_keys(k: np.ndarray, domain: np.dtype) -> np.ndarray:
    """Map int64 keys back to float64 values of the domain."""
    if domain.itemsize == 4:
        bits = np.where(k < 0, (-k - 1) - (1 << 31), k).astype(np.int32)
    else:
        bits = np.where(k < 0, (-k - 1) | np.int64(-(1 << 63)), k)
    return bits.view(domain).astype(np.float64)


def _round_up(v: np.ndarray, domain: np.dtype) -> np.ndarray:
    """Return the least value of the domain at or above each float64 value."""
    r = v.astype(domain)
    r = np.where(r.astype(np.float64) < v, np.nextafter(r, domain.type(np.inf)), r)
    return r.astype(np.float64)


def _fine_pass(
    blocks: Callable[[], Iterator[np.ndarray]], tot: _Totals, edges: np.ndarray, s: _Scratch
) -> tuple[np.ndarray, np.ndarray, _Grid]:
    """Run pass 2: histogram counts, exact to np.histogram, and the fine counts behind them."""
    assert tot.dtype is not None
    bins = edges.size - 1
    per_bin = 1 << max(2, math.ceil(math.log2(_FINE_TARGET / bins)))
    size = bins * per_bin
    domain = np.dtype(np.float32) if tot.dtype == np.float32 else np.dtype(np.float64)
    grid = _Grid(tot.lo, tot.hi, size / (tot.hi - tot.lo), size, per_bin, domain)
    # Values of the type fall on the wrong side of histogram edge i exactly when they lie between the
    # arithmetic threshold T[i] and the true edge E[i]; usually T == E everywhere (float32, generic range).
    arith = grid.thresholds(np.arange(1, bins) * per_bin)
    true = _round_up(edges[1:-1], domain)
    bad = np.flatnonzero(arith != true)
    # A few straddled edges: count the values between T and E by comparison, in the input's own type.
    checks = (
        [
            (
                i + 1,
                arith[i] < true[i],
                domain.type(min(arith[i], true[i])),
                domain.type(max(arith[i], true[i])),
            )
            for i in bad.tolist()
        ]
        if bad.size <= _MAX_EDGE_CHECKS
        else []
    )
    remask = bad.size > _MAX_EDGE_CHECKS
    fine = np.zeros(size + 1, dtype=np.int64)
    fixes = np.zeros(bins, dtype=np.int64)
    lo, scale, mask = grid.lo, grid.scale, per_bin - 1
    limit = tot.near_zero_limit()
    for c in blocks():
        n = c.size
        x, f = s.x[:n], s.idx[:n]
        np.copyto(x, c, casting="unsafe")
        tot.near_zero += int(np.count_nonzero(_near_zero(x, limit, s.sq[:n], s.m1[:n])))
        x -= lo
        x *= scale
        np.copyto(f, x, casting="unsafe")
        # t reaches size only at the maximum; bin `size` is folded into the last one below.
        fine += np.bincount(f, minlength=size + 1)
        for edge, down, start, stop in checks:
            a, b = s.m1[:n], s.m2[:n]
            np.greater_equal(c, start, out=a)
            np.less(c, stop, out=b)
            np.logical_and(a, b, out=a)
            k = int(np.count_nonzero(a))
            # down: arithmetic put them in bin `edge`, they belong below it; else the other way round.
            fixes[edge - 1] += k if down else -k
            fixes[edge] += -k if down else k
        if remask:
            # Many straddled edges (float64 data): re-bin every value in a fine bin beside an edge.
            g, near = s.idx2[:n], s.m1[:n]
            np.add(f, 1, out=g)
            np.bitwise_and(g, mask, out=g)
            np.less_equal(g, 1, out=near)
            if near.any():
                xs = c[near].astype(np.float64)
                fixes += np.bincount(_exact_bins(xs, grid.lo, grid.hi, edges), minlength=bins)
                fixes -= np.bincount(np.minimum(f[near] // per_bin, bins - 1), minlength=bins)
    fine[size - 1] += fine[size]
    fine = fine[:size]
    counts = fine.reshape(bins, per_bin).sum(axis=1) + fixes
    if int(fine.sum()) != tot.finite:
        raise SourceError("tensor chunks changed between reads")
    return counts, fine, grid


def _select_pass(
    blocks: Callable[[], Iterator[np.ndarray]], fine: np.ndarray, grid: _Grid, ranks: list[int], s: _Scratch
) -> dict[int, float]:
    """Run pass 3: gather the values of the fine bins that hold the ranks and select them exactly."""
    cum = np.cumsum(fine)
    where = np.searchsorted(cum, np.asarray(ranks), side="right")
    # Runs of adjacent target bins become one value interval [start, stop) of the domain.
    runs: list[list[int]] = []
    for b in sorted(set(where.tolist())):
        if runs and runs[-1][1] == b:
            runs[-1][1] = b + 1
        else:
            runs.append([b, b + 1])
    bounds = grid.thresholds(np.array([b for run in runs for b in run], dtype=np.int64))
    first_rank = [int(cum[run[0] - 1]) if run[0] else 0 for run in runs]
    expect = [int(cum[run[1] - 1]) - r for run, r in zip(runs, first_rank)]
    dt = grid.domain.type
    pairs = [(dt(bounds[2 * i]), dt(bounds[2 * i + 1])) for i in range(len(runs))]
    got: list[np.ndarray] = []
    for c in blocks():
        n = c.size
        hit, a, b = s.m1[:n], s.m2[:n], s.m3[:n]
        for i, (start, stop) in enumerate(pairs):
            dst = hit if i == 0 else a
            np.greater_equal(c, start, out=dst)
            if np.isfinite(stop):
                np.less(c, stop, out=b)
                np.logical_and(dst, b, out=dst)
            if i:
                np.logical_or(hit, a, out=hit)
        got.append(c[hit])
    found = np.concatenate(got).astype(np.float64) if got else np.zeros(0)
    out: dict[int, float] = {}
    for i, (start, stop) in enumerate(pairs):
        vals = found[(found >= start) & (found < stop)]
        if vals.size != expect[i]:
            raise SourceError("tensor chunks changed between reads")
        want = [k for k in ranks if first_rank[i] <= k < first_rank[i] + expect[i]]
        local = [k - first_rank[i] for k in want]
        part = np.partition(vals, local)
        out.update({k: float(part[j]) for k, j in zip(want, local)})
    return out


def readable_range(stats: TensorStats, widen: float, trigger: float) -> tuple[float, float] | None:
    """Return [p01, p99] widened by `widen` of its width each side when it is under `trigger` of [min, max]."""
    if not (stats.finite and math.isfinite(stats.p01) and math.isfinite(stats.p99)):
        return None
    full = stats.max - stats.min
    span = stats.p99 - stats.p01
    if not full > 0 or not span > 0:
        return None
    lo, hi = max(stats.min, stats.p01 - widen * span), min(stats.max, stats.p99 + widen * span)
    return (lo, hi) if hi - lo < trigger * full else None


def clipped_histogram(values: np.ndarray | ChunkFactory, lo: float, hi: float, bins: int) -> ClippedHistogram:
    """Count finite values in `bins` equal bins over [lo, hi] and those outside, reading one piece at a time."""
    counts = np.zeros(bins, dtype=np.int64)
    below = above = 0
    for piece in flat_pieces(values, _TABLE_BLOCK)():
        x = np.asarray(piece, dtype=np.float64)
        x = x[np.isfinite(x)]
        below += int(np.count_nonzero(x < lo))
        above += int(np.count_nonzero(x > hi))
        counts += np.histogram(x, bins=bins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, bins + 1)
    return ClippedHistogram(tuple(edges.tolist()), tuple(int(c) for c in counts), below, above)
