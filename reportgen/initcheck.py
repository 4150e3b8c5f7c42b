"""How closely one tensor matches the distribution its initializer draws from: KS test, bound, scale, shape."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from reportgen.initializers import InitDistribution
from reportgen.stats import ChunkFactory, TensorStats, flat_pieces
from reportgen.stats.kernels import count_patterns
from reportgen.thresholds import DEFAULT, Thresholds

BOUNDED = ("uniform", "truncated_normal")
_CHUNK = 1 << 22  # elements per float64 scratch chunk: 32 MiB


@dataclass(frozen=True)
class InitCheck:
    """How well one tensor matches the distribution its initializer draws from."""

    family: str  # uniform | normal | truncated_normal | orthogonal | constant
    n_values: int  # finite values of the tensor
    ks_sample: int  # values the KS test used (a seeded subsample of large tensors); 0 for constants
    ks_stat: float  # KS distance D to the exact init CDF; NaN for constants
    ks_pvalue: float
    bound: float | None  # half-width around the mean counted as inside; None for constants
    bound_rule: str  # "|w - mean| <= limit" (uniform, truncated normal) or "|w - mean| <= 3 std" (normal)
    inside_share: float  # share of finite values inside the bound
    expected_inside: float  # 1.0 for bounded families, 0.9973 within 3 std of a normal
    std_ratio: float  # empirical std / theoretical std
    mean_in_std: float  # (empirical mean - init mean) / theoretical std
    kurtosis: float  # excess kurtosis of the data
    expected_kurtosis: float  # of the init family: uniform -1.2, normal 0, truncated at 2 sigma -0.634
    const_share: float | None = None  # constants only: share of values exactly equal to the constant

    @property
    def bounded(self) -> bool:
        """Whether a fresh draw lies entirely inside the bound."""
        return self.family in BOUNDED

    @property
    def kurtosis_change(self) -> float:
        """Data kurtosis minus the family's: > 0 when training grew heavier tails."""
        return self.kurtosis - self.expected_kurtosis


def expected_kurtosis(dist: InitDistribution) -> float:
    """Return the excess kurtosis of one value drawn from the distribution."""
    if dist.family == "uniform":
        return -1.2
    if dist.family == "normal":
        return 0.0
    if dist.family == "truncated_normal":
        from scipy import stats as sps

        cut = (dist.limit or 0.0) / (dist.base_std or 1.0)
        return float(sps.truncnorm(-cut, cut).stats(moments="k"))
    if dist.family == "orthogonal":
        # An entry x of a Haar-orthogonal n-vector has x^2 ~ Beta(1/2, (n-1)/2): excess kurtosis -6/(n+2).
        gain = float(dist.spec.param("gain", 1.0))
        n = (gain / dist.std) ** 2 if dist.std > 0 else math.inf
        return -6.0 / (n + 2.0)
    return float("nan")


@functools.lru_cache(maxsize=8)
def _sample_positions(count: int, sample_size: int, seed: int) -> np.ndarray:
    """Return the sorted positions of the KS subsample: the same for every tensor of this size."""
    # Drawing and sorting them costs ~40 ms; a checkpoint's tensors share a few sizes.
    idx = np.sort(np.random.default_rng(seed).choice(count, size=sample_size, replace=False))
    idx.flags.writeable = False
    return idx


def _inside_table(dt: np.dtype, mean: float, bound: float) -> np.ndarray | None:
    """Return, per bit pattern of a type of 16 bits or fewer, whether |x - mean| <= bound; None if wider."""
    if dt.itemsize > 2 or dt.kind not in "biufV":
        return None
    uint = np.uint16 if dt.itemsize == 2 else np.uint8
    x = np.arange(1 << (8 * dt.itemsize), dtype=uint).view(dt).astype(np.float32)
    return _inside(x, mean, bound)


def _inside(chunk: np.ndarray, mean: float, bound: float) -> np.ndarray:
    """Mark |x - mean| <= bound, in float32 unless the values are float64."""
    # float32 arithmetic is exact enough here (the bound has 1e-6 slack) and 8x faster than float64.
    work = np.float64 if chunk.dtype == np.float64 else np.float32
    x: np.ndarray = chunk.astype(work, copy=False)
    centred = x - work(mean) if mean else x
    return np.abs(centred) <= work(bound)


def _scan(
    chunks: Callable[[], Iterator[np.ndarray]],
    count: int,
    sample_size: int,
    seed: int,
    mean: float,
    bound: float,
    patterns: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """Read the values once: the finite KS sample as float64 (the same for any chunking) and the count inside.

    patterns: counts per bit pattern already made by the statistics; the count inside then comes from them.
    """
    idx = _sample_positions(count, sample_size, seed) if count > sample_size else None
    picked, start, inside = [], 0, 0
    table, lut, counting = patterns, None, False
    for c in chunks():
        if idx is None:
            picked.append(c.astype(np.float64))
        else:
            lo, hi = np.searchsorted(idx, [start, start + c.size])
            if hi > lo:
                picked.append(c[idx[lo:hi] - start])
        if start == 0:
            # Types of 16 bits or fewer: count bit patterns, then look the bound up once per pattern.
            lut = _inside_table(c.dtype, mean, bound)
            counting = lut is not None and table is None
            table = np.zeros(lut.size, dtype=np.int64) if counting and lut is not None else table
        start += c.size
        if counting and table is not None:
            count_patterns(c.reshape(-1).view(np.uint16 if c.dtype.itemsize == 2 else np.uint8), table)
        elif lut is None:
            inside += int(np.count_nonzero(_inside(c, mean, bound)))
    if lut is not None and table is not None:
        inside = int(table[lut].sum())
    x = np.concatenate(picked).astype(np.float64) if picked else np.zeros(0)
    return x[np.isfinite(x)], inside


def check_init(
    values: np.ndarray | ChunkFactory,
    dist: InitDistribution,
    stats: TensorStats,
    *,
    sample_size: int = 200_000,
    seed: int = 0,
    patterns: np.ndarray | None = None,
) -> InitCheck:
    """Compare a tensor with its init distribution: KS test, bound share, scale, kurtosis.

    values is the tensor, or a function returning its values as 1-D chunks (read one at a time);
    patterns its counts per bit pattern where the statistics made them (types of 16 bits or fewer).
    """
    chunks = flat_pieces(values, _CHUNK)
    n = stats.finite
    nan = float("nan")
    if dist.family == "constant":
        equal = offset = 0
        for c in chunks():
            want = np.asarray(dist.constant_values(offset, c.size, stats.count)).astype(c.dtype)
            equal += int(np.count_nonzero(c == want))
            offset += c.size
        share = equal / stats.count if stats.count else nan
        return InitCheck(
            family="constant",
            n_values=n,
            ks_sample=0,
            ks_stat=nan,
            ks_pvalue=nan,
            bound=None,
            bound_rule="",
            inside_share=share,
            expected_inside=1.0,
            std_ratio=nan,
            mean_in_std=nan,
            kurtosis=stats.kurtosis,
            expected_kurtosis=nan,
            const_share=share,
        )
    if dist.family in BOUNDED and dist.limit is not None:
        # float32 storage can put a value one ulp beyond a float64 limit.
        bound, rule, expected = dist.limit * (1 + 1e-6), "|w - mean| <= limit", 1.0
    else:
        bound, rule, expected = 3.0 * dist.std, "|w - mean| <= 3 std", math.erf(3.0 / math.sqrt(2.0))
    sample, inside = _scan(chunks, stats.count, sample_size, seed, dist.mean, bound, patterns)
    if sample.size:
        from scipy import stats as sps

        ks = sps.kstest(sample, dist.cdf)
        d, p = float(ks.statistic), float(ks.pvalue)
    else:
        d = p = nan
    std_ratio = stats.std / dist.std if dist.std > 0 else nan
    mean_in_std = (stats.mean - dist.mean) / dist.std if dist.std > 0 else nan
    return InitCheck(
        family=dist.family,
        n_values=n,
        ks_sample=int(sample.size),
        ks_stat=d,
        ks_pvalue=p,
        bound=bound,
        bound_rule=rule,
        inside_share=inside / n if n else nan,
        expected_inside=expected,
        std_ratio=std_ratio,
        mean_in_std=mean_in_std,
        kurtosis=stats.kurtosis,
        expected_kurtosis=expected_kurtosis(dist),
    )


def std_ratio_limits(check: InitCheck, t: Thresholds = DEFAULT) -> tuple[float, float]:
    """Return the std-ratio band of a fresh draw, widened for small tensors by sampling error."""
    # Standard error of a sample std relative to sigma: sqrt((excess kurtosis + 2) / (4 n)).
    k = check.expected_kurtosis if math.isfinite(check.expected_kurtosis) else 0.0
    se = math.sqrt(max(k + 2.0, 0.0) / (4.0 * max(check.n_values, 1)))
    lo, hi = t.std_ratio_band
    return min(lo, 1.0 - t.std_ratio_sampling_z * se), max(hi, 1.0 + t.std_ratio_sampling_z * se)


def fresh_draw_failures(check: InitCheck, t: Thresholds = DEFAULT) -> list[str]:
    """Return why the tensor is not a fresh draw from its init, one phrase per failed test; [] if it is."""
    if check.family == "constant":
        share = check.const_share if check.const_share is not None else 0.0
        return [] if share >= 1.0 else [f"{1.0 - share:.1%} of values differ from the constant"]
    out = []
    if not math.isfinite(check.ks_pvalue):
        out.append("no finite values to test")
    elif check.ks_pvalue < t.ks_pvalue_floor:
        out.append(f"KS D={check.ks_stat:.3f} (p={check.ks_pvalue:.2g} < {t.ks_pvalue_floor:g})")
    lo, hi = std_ratio_limits(check, t)
    if not lo <= check.std_ratio <= hi:
        out.append(f"std ratio {check.std_ratio:.3g} outside [{lo:.2f}, {hi:.2f}]")
    if check.bounded and not check.inside_share >= t.inside_bound_min:
        out.append(f"{1.0 - check.inside_share:.2%} of values beyond the init bound {check.bound:.3g}")
    return out
