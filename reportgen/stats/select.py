"""Passes 2 and 3 of large tensors: exact histogram counts on a fine grid, then exact order statistics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from reportgen.errors import SourceError
from reportgen.stats.blocks import (
    Scratch,
)
from reportgen.stats.moments import (
    Totals,
    exact_bins,
    near_zero_mask,
)

# A few histogram edges that values of the type may straddle are counted by value; more are re-binned.
_MAX_EDGE_CHECKS = 4


# About this many fine bins for locating order statistics; the counts stay L2-resident.
FINE_TARGET = 8192


@dataclass(frozen=True)
class Grid:
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


def fine_pass(
    blocks: Callable[[], Iterator[np.ndarray]], tot: Totals, edges: np.ndarray, s: Scratch
) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Run pass 2: histogram counts, exact to np.histogram, and the fine counts behind them."""
    assert tot.dtype is not None
    bins = edges.size - 1
    per_bin = 1 << max(2, math.ceil(math.log2(FINE_TARGET / bins)))
    size = bins * per_bin
    domain = np.dtype(np.float32) if tot.dtype == np.float32 else np.dtype(np.float64)
    grid = Grid(tot.lo, tot.hi, size / (tot.hi - tot.lo), size, per_bin, domain)
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
        tot.near_zero += int(np.count_nonzero(near_zero_mask(x, limit, s.sq[:n], s.m1[:n])))
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
                fixes += np.bincount(exact_bins(xs, grid.lo, grid.hi, edges), minlength=bins)
                fixes -= np.bincount(np.minimum(f[near] // per_bin, bins - 1), minlength=bins)
    fine[size - 1] += fine[size]
    fine = fine[:size]
    counts = fine.reshape(bins, per_bin).sum(axis=1) + fixes
    if int(fine.sum()) != tot.finite:
        raise SourceError("tensor chunks changed between reads")
    return counts, fine, grid


def select_pass(
    blocks: Callable[[], Iterator[np.ndarray]], fine: np.ndarray, grid: Grid, ranks: list[int], s: Scratch
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
