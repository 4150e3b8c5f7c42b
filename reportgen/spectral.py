"""Eigenvalue spectra of weight matrices and their heavy-tail (power-law) metrics.

Conventions follow WeightWatcher (weightwatcher 0.7.x) so the numbers can be compared:
a Dense kernel is one matrix; a conv kernel is cut into its kh*kw slices of shape
(in, out), whose eigenvalues are pooled. The eigenvalues are those of X = W^T W per
slice (squared singular values), not divided by N. Two deliberate differences:
WeightWatcher by default multiplies conv slices by 1/sqrt(2) (its ``conv2d_norm``),
halving their eigenvalues, and it judges its power-law fit with a one-sided KS step;
here eigenvalues are raw and the KS distance is the two-sided one of Clauset,
Shalizi and Newman (2009).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from reportgen.vocab import SpectralFit

# Given a number of rows, yields the rows of one matrix in order, that many at a time (the last may be short).
RowBlocks = Callable[[int], Iterator[np.ndarray]]

# Fewer eigenvalues than this say nothing about a spectrum's shape; WeightWatcher's
# default min_evals is the same.
MIN_EVALS = 8
# A tail shorter than this gives an alpha whose standard error (alpha - 1) / sqrt(n)
# exceeds ~30%, so such xmin candidates are not considered.
MIN_TAIL = 10
# xmin is searched on a coarse grid of this many candidates, then exhaustively between the
# neighbours of the best few. The grid is geometric in tail size: short tails, where the KS
# curve has narrow dips, are all visited, long ones every ~2.5%. This keeps the fit at
# O(n * ~1000) instead of O(n^2) for the 4608 eigenvalues of a 3x3x512x512 kernel.
COARSE_CANDIDATES = 256
REFINE_TOP = 4
# Gram matrices up to this side are formed and diagonalised in float64; above it float32
# Gram + LAPACK syevd is 2-3x faster on CPUs and still resolves eigenvalues down to
# ~1e-6 of the largest, far below any tail that is fitted.
FLOAT64_MAX_SIDE = 1024
# Elements of W converted per update of a Gram matrix (16 MiB in float32), and the most elements of a
# panel of rows held in memory while W W^T is accumulated for a matrix wider than tall (128 MiB).
_GRAM_BLOCK = 1 << 22
_PANEL = 1 << 25
# Eigenvalues below this fraction of the largest are rounding noise of the Gram product
# (float32 epsilon times the matrix side), so the fit ignores them.
_NOISE_FLOOR = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power law p(x) ~ x^-alpha fitted to the values >= xmin by maximum likelihood."""

    alpha: float  # NaN when no fit was possible
    xmin: float
    ks_distance: float  # KS distance between the tail and the fitted law (two-sided unless asked)
    n_tail: int  # values >= xmin
    sigma: float  # standard error of alpha, (alpha - 1) / sqrt(n_tail)


@dataclass(frozen=True)
class SpectralMetrics:
    """Spectrum of one kernel; None is returned instead when it has too few eigenvalues
    (fewer than MIN_EVALS: nothing to fit) or a matrix side above max_dim (the Gram matrix
    would cost O(side^2) memory and O(side^3) time).
    """

    n_matrices: int  # 1 for Dense; kh*kw slices for a conv kernel
    matrix_shape: tuple[int, int]  # (N, M), N >= M, of one matrix; each gives M eigenvalues
    n_evals: int
    spectral_norm: float  # largest eigenvalue of W^T W, i.e. sigma_max^2 (WeightWatcher's spectral_norm)
    sum_evals: float  # ||W||_F^2 summed over slices
    stable_rank: float  # sum of eigenvalues / largest eigenvalue
    alpha: float  # power-law exponent of the eigenvalue tail; NaN when not fittable
    alpha_weighted: float  # alpha * log10(spectral_norm), as WeightWatcher
    xmin: float
    ks_distance: float
    n_tail: int
    precision: str  # float64 | float32: arithmetic of the Gram product and eigensolver
    evals: np.ndarray | None = field(default=None, repr=False, compare=False)  # ascending float64


def weight_matrices(kernel: np.ndarray, layout: str = "keras") -> np.ndarray:
    """Return the kernel as a stack of 2-D matrices (k, rows, cols), as WeightWatcher slices it."""
    w = np.asarray(kernel)
    if w.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 dimensions, got shape {w.shape}")
    if w.ndim == 2:
        return w[None]
    if layout == "torch":
        # (out, in, *k): slice W[:, :, i, j] for every kernel position.
        return np.moveaxis(w.reshape(w.shape[0], w.shape[1], -1), -1, 0)
    # Keras (*k, in, out): W[i, j] is already an (in, out) matrix; the reshape is a view.
    return w.reshape(-1, w.shape[-2], w.shape[-1])


def _gram_evals(stack: np.ndarray, row_blocks: RowBlocks | None = None) -> tuple[np.ndarray, str] | None:
    """Return the pooled eigenvalues of W^T W (smaller side) of every matrix, ascending; None if not finite.

    Sides up to FLOAT64_MAX_SIDE are done in float64, larger ones in float32. A single matrix (Dense,
    Linear) is read in blocks of rows, from row_blocks when given (a tensor streamed from its file),
    so memory holds the Gram matrix and one block or panel, never a converted copy of the whole matrix.
    Conv kernels (several small slices) are converted at once.
    """
    from scipy.linalg import eigvalsh

    k, rows, cols = stack.shape
    side = min(rows, cols)
    dt = np.dtype(np.float64) if side <= FLOAT64_MAX_SIDE else np.dtype(np.float32)
    if k == 1:
        if row_blocks is None:
            m = stack[0]

            def row_blocks(step: int) -> Iterator[np.ndarray]:
                return (m[i : i + step] for i in range(0, rows, step))

        g = _gram_2d(row_blocks, rows, cols, dt)
        if g is None:
            return None
        grams = [g]
    else:
        s = stack.astype(dt)
        if not np.isfinite(s).all():
            return None
        # A.T @ A on one buffer is dispatched to BLAS syrk: half the flops of a general product.
        grams = [w.T @ w if cols <= rows else w @ w.T for w in s]
    out = [eigvalsh(g, lower=True, driver="evd", overwrite_a=True, check_finite=False) for g in grams]
    return np.sort(np.concatenate(out).astype(np.float64)), dt.name


def _gram_2d(row_blocks: RowBlocks, rows: int, cols: int, dt: np.dtype) -> np.ndarray | None:
    """Return W^T W (cols <= rows) or W W^T of one matrix read in row blocks; lower triangle valid."""
    from scipy.linalg.blas import dsyrk, ssyrk

    step = max(1, _GRAM_BLOCK // cols)  # rows per block
    if cols <= rows:
        syrk = dsyrk if dt == np.float64 else ssyrk
        g = np.zeros((cols, cols), dtype=dt, order="F")
        for b in row_blocks(step):
            a = np.ascontiguousarray(b, dtype=dt)
            if not np.isfinite(a).all():
                return None
            # a.T is Fortran-ordered (cols, n): syrk adds a.T @ a to the lower triangle in place.
            g = syrk(1.0, a.T, beta=1.0, c=g, trans=0, lower=1, overwrite_c=1)
        return g
    # More columns than rows: W W^T. A panel of rows stays in memory while every block of rows from
    # the panel on is read again and multiplied with it, filling the lower triangle panel by panel.
    g = np.zeros((rows, rows), dtype=dt, order="F")
    panel_rows = step * max(1, _PANEL // (step * cols))
    for p0 in range(0, rows, panel_rows):
        p1 = min(p0 + panel_rows, rows)
        panel = np.empty((p1 - p0, cols), dtype=dt)
        r = 0
        for b in row_blocks(step):
            n = b.shape[0]
            if r + n <= p0:
                r += n
                continue
            a = np.asarray(b, dtype=dt)
            if p0 == 0 and not np.isfinite(a).all():
                return None
            if r < p1:  # blocks never straddle a panel edge: panel_rows is a multiple of step
                panel[r - p0 : r - p0 + n] = a
                if r + n == p1:
                    g[p0:p1, p0:p1] = panel @ panel.T
            else:
                g[r : r + n, p0:p1] = a @ panel.T
            r += n
    return g


def _ks_distances(logx: np.ndarray, starts: np.ndarray, alphas: np.ndarray, two_sided: bool) -> np.ndarray:
    """Return the KS distance of each tail logx[start:] to its fitted power law."""
    n = logx.size
    out = np.empty(starts.size)
    j = np.arange(n)
    block = max(1, (1 << 21) // n)  # ~16 MiB of float64 scratch per block
    for b in range(0, starts.size, block):
        i = starts[b : b + block, None]
        a = alphas[b : b + block, None]
        m = (n - i).astype(np.float64)
        k = j[None, :] - i
        inside = k >= 0
        lx = np.where(inside, logx[None, :] - logx[i], 0.0)
        cdf = -np.expm1((1.0 - a) * lx)
        # The empirical CDF steps from k/m to (k+1)/m at each value; WeightWatcher compares with k/m only.
        d = np.maximum(cdf - k / m, (k + 1) / m - cdf) if two_sided else np.abs(cdf - k / m)
        out[b : b + block] = np.where(inside, d, -np.inf).max(axis=1)
    return out


def fit_power_law(
    values: np.ndarray, *, min_tail: int = MIN_TAIL, ks: str = "two-sided", exhaustive: bool = False
) -> PowerLawFit:
    """Fit a power-law tail by MLE, choosing xmin to minimise the KS distance (Clauset et al.).

    ks="weightwatcher" measures the distance as WeightWatcher 0.7 does (one side of each step),
    which favours short tails; with min_tail=2 and exhaustive=True it reproduces WeightWatcher's
    alpha. exhaustive=True scores every xmin candidate (O(n^2)) instead of a coarse grid and its
    best neighbourhoods.
    """
    if ks not in ("two-sided", "weightwatcher"):
        raise ValueError(f"ks must be 'two-sided' or 'weightwatcher', not {ks!r}")
    two_sided = ks == "two-sided"
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    x = x[np.isfinite(x) & (x > 0)]
    n = x.size
    nan = float("nan")
    if n < max(min_tail, 2):
        return PowerLawFit(nan, nan, nan, 0, nan)
    logx = np.log(x)
    suffix = np.cumsum(logx[::-1])[::-1]  # sum of logx[i:]
    last = n - max(min_tail, 2)
    cand = np.arange(last + 1)
    # One candidate per distinct value: the tail of xmin is every x >= xmin.
    cand = cand[(cand == 0) | (x[cand] > x[np.maximum(cand - 1, 0)])]
    m = n - cand
    s = suffix[cand] - m * logx[cand]
    ok = s > 0
    cand, m, s = cand[ok], m[ok], s[ok]
    if cand.size == 0:
        return PowerLawFit(nan, nan, nan, 0, nan)
    alphas = 1.0 + m / s
    if exhaustive or cand.size <= 2 * COARSE_CANDIDATES:
        pos = np.arange(cand.size)
    else:
        sizes = np.geomspace(m[-1], m[0], COARSE_CANDIDATES)
        coarse = np.unique(np.clip(np.searchsorted(-m, -sizes), 0, cand.size - 1))  # m is decreasing
        d_coarse = _ks_distances(logx, cand[coarse], alphas[coarse], two_sided)
        near = []
        for j in np.argsort(d_coarse, kind="stable")[:REFINE_TOP]:
            lo, hi = coarse[max(j - 1, 0)], coarse[min(j + 1, coarse.size - 1)]
            near.append(np.arange(lo, hi + 1))
        pos = np.unique(np.concatenate(near))
    d = _ks_distances(logx, cand[pos], alphas[pos], two_sided)
    b = int(np.argmin(d))
    i, alpha, n_tail = int(cand[pos[b]]), float(alphas[pos[b]]), int(m[pos[b]])
    return PowerLawFit(alpha, float(x[i]), float(d[b]), n_tail, (alpha - 1.0) / math.sqrt(n_tail))


def _fit(evals: np.ndarray, lam_max: float, precision: str, k: int, fit: SpectralFit) -> PowerLawFit:
    """Fit the tail: Clauset-Shalizi-Newman (two-sided KS), or WeightWatcher's rule for comparability."""
    if fit == "weightwatcher":
        # WeightWatcher halves conv-slice eigenvalues (conv2d_norm), drops those under 1e-5, takes
        # tails from 2 values and a one-sided KS; scaling leaves alpha unchanged except through that floor.
        ev = evals * (0.5 if k > 1 else 1.0)
        return fit_power_law(ev[ev > 1e-5], min_tail=2, ks="weightwatcher", exhaustive=True)
    return fit_power_law(evals[evals > lam_max * _NOISE_FLOOR[np.dtype(precision)]])


def spectral_metrics(
    kernel: np.ndarray,
    layout: str = "keras",
    *,
    max_dim: int = 8192,
    keep_evals: bool = True,
    fit: SpectralFit = "csn",
    row_blocks: RowBlocks | None = None,
) -> SpectralMetrics | None:
    """Compute the eigenvalue spectrum of a kernel and its norms and power-law fit; None if skipped."""
    w = np.asarray(kernel)
    if w.ndim < 2 or w.size == 0:
        return None
    stack = weight_matrices(w, layout)
    k, rows, cols = stack.shape
    if min(rows, cols) > max_dim or k * min(rows, cols) < MIN_EVALS:
        return None
    gram = _gram_evals(stack, row_blocks if stack.shape[0] == 1 else None)
    if gram is None:
        return None
    evals, precision = gram
    evals = np.clip(evals, 0.0, None)  # tiny negatives are rounding noise of a PSD matrix
    lam_max = float(evals[-1])
    total = float(evals.sum())
    if lam_max > 0:
        law = _fit(evals, lam_max, precision, k, fit)
        stable_rank = total / lam_max
        weighted = law.alpha * math.log10(lam_max)
    else:
        nan = float("nan")
        law, stable_rank, weighted = PowerLawFit(nan, nan, nan, 0, nan), nan, nan
    return SpectralMetrics(
        n_matrices=k,
        matrix_shape=(max(rows, cols), min(rows, cols)),
        n_evals=int(evals.size),
        spectral_norm=lam_max,
        sum_evals=total,
        stable_rank=stable_rank,
        alpha=law.alpha,
        alpha_weighted=weighted,
        xmin=law.xmin,
        ks_distance=law.ks_distance,
        n_tail=law.n_tail,
        precision=precision,
        evals=evals if keep_evals else None,
    )
