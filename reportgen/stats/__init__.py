"""Per-tensor statistics, accumulated in float64 over cache-sized blocks in at most three passes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from reportgen.errors import SourceError
from reportgen.stats.blocks import (
    DEFAULT_BLOCK,
    TABLE_BLOCK,
    Scratch,
    aligned_blocks,
    cut_blocks,
    finite_blocks,
    flat_pieces,
)
from reportgen.stats.model import ChunkFactory, ClippedHistogram, Histogram, TensorStats
from reportgen.stats.moments import (
    Totals,
    empty_stats,
    exact_bins,
    first_pass,
    histogram_range,
    make_stats,
    near_zero_mask,
    pick_quantiles,
    to_histogram,
)
from reportgen.stats.select import FINE_TARGET, fine_pass, select_pass
from reportgen.stats.table import from_table

# Up to this many finite values the quantiles come from np.partition on a gathered float64 copy. Above
# it a fine histogram and a third pass are faster: np.partition costs ~15 ns per value, the pass ~1 ns,
# after ~1.3 ms of fixed cost (measured float32 normal: 64 Ki 3.7 ms either way, 1 Mi 36 ms vs 8 ms).
DEFAULT_SELECT_MAX = 1 << 16


def compute_stats(
    data: np.ndarray | ChunkFactory,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | None = None,
    bins: int = 60,
    block: int = DEFAULT_BLOCK,
    select_max: int = DEFAULT_SELECT_MAX,
) -> TensorStats:
    """Compute TensorStats from an array or from a factory of 1-D chunks (called at most three times)."""
    return stats_and_patterns(data, shape=shape, dtype=dtype, bins=bins, block=block, select_max=select_max)[0]


def stats_and_patterns(
    data: np.ndarray | ChunkFactory,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | None = None,
    bins: int = 60,
    block: int = DEFAULT_BLOCK,
    select_max: int = DEFAULT_SELECT_MAX,
) -> tuple[TensorStats, np.ndarray | None]:
    """Compute TensorStats and, for types of 16 bits or fewer, the read-only count of every bit pattern.

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
    scratch = Scratch(scratch_size)
    tot = first_pass(chunks(), block, scratch)
    shape = (tot.count,) if shape is None else shape
    dtype = dtype if dtype is not None else str(tot.dtype if tot.dtype is not None else np.dtype(np.float64))
    if tot.table is not None:
        tot.table.flags.writeable = False
        return from_table(tot, shape, dtype, bins), tot.table
    return _from_passes(tot, shape, dtype, bins, chunks, block, select_max, scratch), None


def _from_passes(
    tot: Totals,
    shape: tuple[int, ...],
    dtype: str,
    bins: int,
    chunks: Callable[[], Iterator[np.ndarray]],
    block: int,
    select_max: int,
    scratch: Scratch,
) -> TensorStats:
    """Finish the stats of a float32/float64/wide-integer tensor with passes 2 and 3 as needed."""
    n = tot.finite
    if n == 0:
        return empty_stats(tot, shape, dtype)
    lo, hi = tot.lo, tot.hi
    # L2 from the moments: both terms are positive, so nothing cancels.
    l2sq = tot.m2 + n * tot.mean * tot.mean
    first, last = histogram_range(lo, hi)
    edges = np.linspace(first, last, bins + 1)
    if lo == hi:
        tot.near_zero = n * int(near_zero_mask(np.array([lo]), tot.near_zero_limit())[0])
        tot.mean, tot.m2, tot.m3, tot.m4 = lo, 0.0, 0.0, 0.0
        counts = np.zeros(bins, dtype=np.int64)
        # Past 2**53 the +-0.5 range collapses onto lo (np.histogram refuses such data): the middle bin.
        counts[exact_bins(np.array([lo]), first, last, edges)[0] if last > first else bins // 2] = n
        return make_stats(tot, shape, dtype, n * lo * lo, (lo, lo, lo), to_histogram(edges, counts))
    scale = bins / (hi - lo)

    def blocks() -> Iterator[np.ndarray]:
        return finite_blocks(cut_blocks(chunks(), block), tot.nan + tot.inf > 0)

    if n <= select_max or not math.isfinite(scale) or not math.isfinite(scale * FINE_TARGET):
        values = np.empty(n)
        pos = 0
        for c in blocks():
            if pos + c.size > n:
                raise SourceError("tensor chunks changed between reads")
            np.copyto(values[pos : pos + c.size], c, casting="unsafe")
            pos += c.size
        if pos != n:
            raise SourceError("tensor chunks changed between reads")
        counts = np.bincount(exact_bins(values, first, last, edges), minlength=bins)
        tot.near_zero = int(np.count_nonzero(near_zero_mask(values, tot.near_zero_limit())))

        def gathered(ranks: list[int]) -> dict[int, float]:
            part = np.partition(values, ranks)
            return {k: float(part[k]) for k in ranks}

        return make_stats(tot, shape, dtype, l2sq, pick_quantiles(n, gathered), to_histogram(edges, counts))
    counts, fine, grid = fine_pass(blocks, tot, edges, scratch)
    quantiles = pick_quantiles(n, lambda ranks: select_pass(blocks, fine, grid, ranks, scratch))
    return make_stats(tot, shape, dtype, l2sq, quantiles, to_histogram(edges, counts))


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


def clipped_histogram(
    values: np.ndarray | ChunkFactory, lo: float, hi: float, bins: int, patterns: np.ndarray | None = None
) -> ClippedHistogram:
    """Count finite values in `bins` equal bins over [lo, hi] and those outside, reading one piece at a time.

    patterns: the counts per bit pattern from stats_and_patterns; then nothing is read again.
    """
    counts = np.zeros(bins, dtype=np.int64)
    below = above = 0
    if patterns is not None:
        dt = next(iter(flat_pieces(values, 1)())).dtype
        present = np.flatnonzero(patterns)
        x = present.astype(np.uint16 if dt.itemsize == 2 else np.uint8).view(dt).astype(np.float64)
        keep = np.isfinite(x)
        x, w = x[keep], patterns[present[keep]]
        below, above = int(w[x < lo].sum()), int(w[x > hi].sum())
        # The same bin of each value as unweighted below; the float64 sums of integer weights are exact.
        counts += np.rint(np.histogram(x, bins=bins, range=(lo, hi), weights=w.astype(np.float64))[0]).astype(np.int64)
        pieces: Iterator[np.ndarray] = iter(())
    else:
        pieces = flat_pieces(values, TABLE_BLOCK)()
    for piece in pieces:
        x = np.asarray(piece, dtype=np.float64)
        x = x[np.isfinite(x)]
        below += int(np.count_nonzero(x < lo))
        above += int(np.count_nonzero(x > hi))
        counts += np.histogram(x, bins=bins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, bins + 1)
    return ClippedHistogram(tuple(edges.tolist()), tuple(int(c) for c in counts), below, above)


__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_SELECT_MAX",
    "ChunkFactory",
    "ClippedHistogram",
    "Histogram",
    "TensorStats",
    "aligned_blocks",
    "clipped_histogram",
    "compute_stats",
    "flat_pieces",
    "readable_range",
    "stats_and_patterns",
]
