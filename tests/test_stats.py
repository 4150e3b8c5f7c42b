"""compute_stats against independent NumPy/SciPy computations on float64 copies."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import ml_dtypes
import numpy as np
import pytest
import scipy.stats

from reportgen.errors import SourceError
from reportgen.stats import TensorStats, compute_stats
from reportgen.thresholds import NEAR_ZERO_REL

RTOL = 1e-9
# Skewness and excess kurtosis sit near 0 for symmetric data, where a relative bound means nothing;
# both are dimensionless, so an absolute floor of the same size is the equivalent check.
SHAPE_ATOL = 1e-9
BINS = 60


def reference(values: np.ndarray, bins: int = BINS) -> dict[str, object]:
    """Compute every expected number with plain NumPy/SciPy calls on a float64 copy."""
    x = np.asarray(values).astype(np.float64).reshape(-1)
    f = x[np.isfinite(x)]
    lo, hi = f.min(), f.max()
    rng = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    counts, edges = np.histogram(f, bins=bins, range=rng)
    p01, med, p99 = np.percentile(f, [1, 50, 99])
    return {
        "count": x.size,
        "finite": f.size,
        "nan": int(np.isnan(x).sum()),
        "inf": int(np.isinf(x).sum()),
        "zeros": int((x == 0).sum()),
        "near_zero": int((np.abs(f) <= NEAR_ZERO_REL * np.abs(f).max()).sum()),
        "mean": np.mean(f),
        "std": np.std(f),
        "var": np.var(f),
        "min": lo,
        "max": hi,
        "median": med,
        "p01": p01,
        "p99": p99,
        "mean_abs": np.mean(np.abs(f)),
        "max_abs": np.max(np.abs(f)),
        "l2": np.sqrt(np.sum(f * f)),
        "skewness": scipy.stats.skew(f, bias=True),
        "kurtosis": scipy.stats.kurtosis(f, fisher=True, bias=True),
        "counts": counts,
        "edges": edges,
    }


def assert_matches(stats: TensorStats, values: np.ndarray, *, hist_slack: int = 0) -> None:
    """Check every field of stats against reference(values)."""
    ref = reference(values)
    for key in ("count", "finite", "nan", "inf", "zeros", "near_zero"):
        assert getattr(stats, key) == ref[key], key
    for key in ("mean", "std", "var", "min", "max", "median", "p01", "p99", "mean_abs", "max_abs", "l2"):
        np.testing.assert_allclose(getattr(stats, key), ref[key], rtol=RTOL, atol=0, err_msg=key)
    for key in ("skewness", "kurtosis"):
        np.testing.assert_allclose(getattr(stats, key), ref[key], rtol=RTOL, atol=SHAPE_ATOL, err_msg=key)
    assert stats.histogram is not None
    np.testing.assert_array_equal(stats.histogram.edges, ref["edges"])
    diff = np.abs(np.array(stats.histogram.counts) - ref["counts"]).sum()
    assert diff <= hist_slack, f"histogram differs from np.histogram by {diff} counts"
    assert sum(stats.histogram.counts) == ref["finite"]


def chunked(values: np.ndarray, sizes: list[int]) -> Iterator[np.ndarray]:
    """Yield values flattened, in pieces of the given sizes (the last piece takes the rest)."""
    flat = values.reshape(-1)
    start = 0
    for size in sizes:
        yield flat[start : start + size]
        start += size
    yield flat[start:]


RNG = np.random.default_rng(20240611)
NORMAL32 = RNG.normal(0.3, 2.0, 50_000).astype(np.float32)
UNIFORM64 = RNG.uniform(-0.05, 0.07, (200, 250))
LOGNORMAL32 = RNG.lognormal(0.0, 1.0, 70_000).astype(np.float32)  # skewed: shape stats far from 0


@pytest.mark.parametrize(
    "values",
    [NORMAL32, UNIFORM64, LOGNORMAL32, NORMAL32.astype(np.float64)],
    ids=["normal32", "uniform64", "lognormal32", "normal64"],
)
@pytest.mark.parametrize("select_max", [0, 1 << 30], ids=["fine-histogram", "partition"])
def test_random_tensors_match_numpy_and_scipy(values: np.ndarray, select_max: int) -> None:
    stats = compute_stats(values, block=4096, select_max=select_max)
    assert stats.shape == values.shape
    assert stats.dtype == str(values.dtype)
    assert_matches(stats, values)


def test_quantiles_of_the_fine_histogram_path_are_exact() -> None:
    # Order statistics are selected, not estimated: the result must be np.percentile's to the last bit.
    values = RNG.standard_normal(30_001)
    stats = compute_stats(values, block=1000, select_max=0)
    assert (stats.p01, stats.median, stats.p99) == tuple(np.percentile(values, [1, 50, 99]))


def test_quantiles_with_heavy_ties() -> None:
    # Pruned weights: most values exactly zero, so one fine bin holds the median and p01's neighbours.
    values = RNG.normal(0, 1, 40_000).astype(np.float32)
    values[RNG.random(values.size) < 0.9] = 0.0
    assert_matches(compute_stats(values, block=3000, select_max=0), values)


def test_large_mean_small_spread_keeps_moments_accurate() -> None:
    values = 1.0e4 + RNG.standard_normal(100_000)
    assert_matches(compute_stats(values, block=777, select_max=0), values)


@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.float16])
def test_constant_tensor(dtype: type) -> None:
    values = np.full((7, 9), 3, dtype=dtype)
    stats = compute_stats(values)
    assert stats.var == 0.0 and stats.std == 0.0
    assert math.isnan(stats.skewness) and math.isnan(stats.kurtosis)
    assert stats.min == stats.max == stats.median == stats.p01 == stats.p99 == 3.0
    ref = reference(values)
    assert stats.histogram is not None
    np.testing.assert_array_equal(stats.histogram.counts, ref["counts"])
    np.testing.assert_array_equal(stats.histogram.edges, ref["edges"])
    assert stats.l2 == pytest.approx(ref["l2"], rel=RTOL)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("value", [1e20, -3e38, 2.0**53 + 2])
def test_constant_tensor_too_large_for_a_unit_range(value: float) -> None:
    # lo - 0.5 == lo here: np.histogram refuses the data; the count goes to the middle bin, without a warning.
    values = np.full(11, value, dtype=np.float32 if abs(value) < 1e30 else np.float64)
    stats = compute_stats(values)
    assert stats.histogram is not None
    counts = np.asarray(stats.histogram.counts)
    assert counts.sum() == 11 and counts[counts.size // 2] == 11
    assert stats.min == stats.max == float(values[0]) and stats.std == 0.0


@pytest.mark.parametrize("select_max", [0, 1 << 30], ids=["fine-histogram", "partition"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_nan_and_inf_are_counted_and_excluded(dtype: type, select_max: int) -> None:
    values = RNG.normal(0, 1, 20_000).astype(dtype)
    values[[3, 4000, 4001]] = np.nan
    values[[10, 12_000]] = np.inf
    values[19_999] = -np.inf
    stats = compute_stats(values, block=1024, select_max=select_max)
    assert (stats.nan, stats.inf, stats.finite) == (3, 3, 20_000 - 6)
    assert_matches(stats, values)


def sparse(dtype: type, size: int = 40_000) -> np.ndarray:
    """Return pruning-like weights: a third exact zeros, a third tiny, some on the near-zero limit."""
    rng = np.random.default_rng(size)  # its own generator: the draws of RNG other tests see stay put
    values = rng.normal(0, 0.05, size)
    part = rng.integers(0, 3, size)
    values[part == 0] = 0.0
    values[part == 1] *= 1e-3
    values[:2] = (-0.25, 0.25)  # max |w|: the limit is 2.5e-4, a multiple of a power of two here
    values[2:50] = np.resize([2.5e-4, -2.5e-4, np.nextafter(2.5e-4, 1.0)], 48)
    return values.astype(dtype)


@pytest.mark.parametrize("select_max", [0, 1 << 30], ids=["fine-histogram", "partition"])
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int8], ids=lambda d: np.dtype(d).name
)
def test_near_zero_counts_values_within_the_limit_on_every_path(dtype: type, select_max: int) -> None:
    values = sparse(np.float64) * (400 if dtype is np.int8 else 1)
    values = values.astype(dtype)
    values[7] = np.nan if np.dtype(dtype).kind == "f" or dtype is ml_dtypes.bfloat16 else values[7]
    stats = compute_stats(values, block=3000, select_max=select_max)
    assert_matches(stats, values)
    assert 0.3 < stats.near_zero_frac < 1.0  # the data really exercise it: zeros, tiny and edge values


def test_near_zero_is_the_same_for_any_chunking() -> None:
    values = sparse(np.float32, 90_001)

    def factory() -> Iterator[np.ndarray]:
        return chunked(values, [3, 40_000, 1, 17_777])

    streamed = compute_stats(factory, shape=values.shape, dtype="float32", block=4096, select_max=0)
    direct = compute_stats(values, block=8192, select_max=1 << 30)
    assert streamed.near_zero == direct.near_zero == reference(values)["near_zero"]


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_near_zero_of_a_constant_tensor(value: float) -> None:
    # All zeros: every value is at the limit 0 and counts; a nonzero constant is never near zero.
    for dtype in (np.float32, np.float16):
        stats = compute_stats(np.full(50, value, dtype=dtype))
        assert stats.near_zero == (50 if value == 0 else 0)


def test_only_nan_and_inf() -> None:
    stats = compute_stats(np.array([np.nan, np.inf, -np.inf], dtype=np.float32))
    assert (stats.count, stats.finite, stats.nan, stats.inf) == (3, 0, 1, 2)
    assert math.isnan(stats.mean) and math.isnan(stats.max) and stats.histogram is None


def test_float16_whose_own_sum_overflows() -> None:
    values = np.full(100_000, 60000.0, dtype=np.float16)
    values[::2] = 40000.0  # both exact in float16
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(values))  # the case is only meaningful if float16 arithmetic overflows
    stats = compute_stats(values)
    assert stats.mean == 50000.0
    assert_matches(stats, values)


@pytest.mark.parametrize(
    "values",
    [
        RNG.normal(0, 0.05, (64, 300)).astype(ml_dtypes.bfloat16),
        RNG.normal(0, 2, 5_000).astype(ml_dtypes.float8_e4m3fn),
        RNG.integers(-127, 128, 20_000).astype(np.int8),
        RNG.integers(0, 65_535, 20_000).astype(np.uint16),
        RNG.random(3_000) < 0.3,
    ],
    ids=["bfloat16", "float8_e4m3fn", "int8", "uint16", "bool"],
)
def test_narrow_types_match_their_float64_values(values: np.ndarray) -> None:
    stats = compute_stats(values)
    assert stats.dtype == str(values.dtype)
    assert_matches(stats, values)


def test_wide_integers_take_the_streaming_path() -> None:
    values = RNG.integers(-1000, 1000, 50_000).astype(np.int64)
    assert_matches(compute_stats(values, block=2048, select_max=0), values)


def test_empty_tensor() -> None:
    stats = compute_stats(np.zeros((0, 4), dtype=np.float32))
    assert (stats.shape, stats.count, stats.finite, stats.zeros) == ((0, 4), 0, 0, 0)
    numbers = (
        stats.mean,
        stats.std,
        stats.var,
        stats.min,
        stats.max,
        stats.median,
        stats.p01,
        stats.p99,
        stats.mean_abs,
        stats.max_abs,
        stats.l2,
        stats.skewness,
        stats.kurtosis,
    )
    assert all(math.isnan(v) for v in numbers)
    assert stats.histogram is None
    assert math.isnan(stats.zero_frac) and math.isnan(stats.near_zero_frac) and stats.near_zero == 0


def test_empty_factory() -> None:
    stats = compute_stats(lambda: iter(()), shape=(0,), dtype="float32")
    assert (stats.count, stats.dtype, stats.histogram) == (0, "float32", None)


def test_zero_dimensional_tensor() -> None:
    stats = compute_stats(np.array(-2.5, dtype=np.float32))
    assert (stats.shape, stats.count, stats.finite) == ((), 1, 1)
    assert stats.mean == stats.min == stats.max == stats.median == stats.p01 == -2.5
    assert (stats.var, stats.max_abs, stats.l2, stats.mean_abs) == (0.0, 2.5, 2.5, 2.5)
    assert stats.histogram is not None and sum(stats.histogram.counts) == 1


@pytest.mark.parametrize("select_max", [0, 1 << 30], ids=["three-passes", "two-passes"])
def test_chunk_factory_equals_array_path(select_max: int) -> None:
    values = RNG.normal(0, 1, (300, 301)).astype(np.float32)
    values[5, 5] = np.nan
    calls = []

    def factory() -> Iterator[np.ndarray]:
        calls.append(1)
        return chunked(values, [1, 7000, 33_333, 2, 20_000])

    streamed = compute_stats(factory, shape=values.shape, dtype="float32", block=5000, select_max=select_max)
    direct = compute_stats(values, block=5000, select_max=select_max)
    # Moments are summed over blocks at fixed offsets of the whole tensor, so any chunking gives the
    # same bits (repr keeps NaN fields comparable).
    assert repr(streamed) == repr(direct)
    assert len(calls) == (3 if select_max == 0 else 2)
    assert_matches(streamed, values)


def test_factory_of_narrow_type_reads_once() -> None:
    values = RNG.normal(0, 1, 10_000).astype(np.float16)
    calls = []

    def factory() -> Iterator[np.ndarray]:
        calls.append(1)
        return chunked(values, [999, 4000])

    assert compute_stats(factory) == compute_stats(values)
    assert len(calls) == 1


def test_factory_that_changes_between_reads_is_reported() -> None:
    reads = iter([RNG.normal(size=5000), RNG.normal(size=4000)])
    with pytest.raises(SourceError):
        compute_stats(lambda: [next(reads)], select_max=0)


@pytest.mark.parametrize(
    ("low", "high", "grid"),
    [
        # Found by search: with these ranges the float64 bin arithmetic and np.histogram's edges disagree
        # on values of the type that sit exactly on an edge (-937.75, ...; exact zeros in the second).
        (-967.0, -850.0, 0.25),
        (-12.013257026672363, 2.1199865341186523, None),
    ],
)
def test_values_exactly_on_histogram_edges(low: float, high: float, grid: float | None) -> None:
    if grid is not None:
        values = (RNG.integers(0, int((high - low) / grid) + 1, 40_000) * grid + low).astype(np.float32)
    else:
        values = RNG.uniform(low, high, 40_000).astype(np.float32)
        values[RNG.random(values.size) < 0.2] = 0.0
    values[:2] = (low, high)
    edges = np.histogram_bin_edges(values.astype(np.float64), BINS, (values.min(), values.max()))
    assert np.isin(values.astype(np.float64), edges[1:-1]).any()  # data really sits on interior edges
    assert_matches(compute_stats(values, block=4096, select_max=0), values)


def test_float64_integers_on_edges() -> None:
    # float64 data straddles many edges at once: the per-value re-binning path.
    values = RNG.integers(-30, 31, 50_000).astype(np.float64)
    assert_matches(compute_stats(values, block=4096, select_max=0), values)


def test_non_contiguous_array() -> None:
    values = RNG.normal(0, 1, (120, 90)).astype(np.float32).T[::2]
    assert_matches(compute_stats(values, block=1000, select_max=0), values)


def test_bins_parameter() -> None:
    values = RNG.normal(0, 1, 9_000)
    stats = compute_stats(values, bins=7, select_max=0, block=1000)
    assert stats.histogram is not None
    np.testing.assert_array_equal(stats.histogram.counts, np.histogram(values, 7)[0])
    with pytest.raises(ValueError):
        compute_stats(values, bins=0)


def test_rejects_complex() -> None:
    with pytest.raises(TypeError):
        compute_stats(np.ones(3, dtype=np.complex64))


def test_threads_share_nothing() -> None:
    tensors = [RNG.normal(i, 1 + i, 40_000).astype(np.float32) for i in range(4)]
    expected = [compute_stats(t, block=4096, select_max=0) for t in tensors]
    results: list[TensorStats | None] = [None] * len(tensors)

    def work(i: int) -> None:
        results[i] = compute_stats(tensors[i], block=4096, select_max=0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tensors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
