"""The compiled loops against their NumPy twins and independent computations; mapped chunk windows."""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from reportgen.analysis import _nonzero, output_units
from reportgen.errors import SourceError
from reportgen.sources.safetensors_file import iter_file_chunks
from reportgen.stats import compute_stats, kernels

needs_numba = pytest.mark.skipif(kernels._compiled() is None, reason="numba not installed")


def _patterns(dtype: type, rng: np.random.Generator) -> np.ndarray:
    """Return every bit pattern of an unsigned type once, then a skewed random stretch of them."""
    every = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    skewed = rng.geometric(0.001, size=300_001).astype(dtype)
    return np.concatenate([every, skewed])


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_count_patterns_matches_unique(dtype: type, jit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if jit == "1" and kernels._compiled() is None:
        pytest.skip("numba not installed")
    monkeypatch.setenv("REPORTGEN_JIT", jit)
    bits = _patterns(dtype, np.random.default_rng(1))
    table = np.zeros(np.iinfo(dtype).max + 1, dtype=np.int64)
    kernels.count_patterns(bits[:1000], table)
    kernels.count_patterns(bits[1000:], table)  # adds to what is there
    want = np.zeros_like(table)
    values, counts = np.unique(bits, return_counts=True)
    want[values] = counts
    np.testing.assert_array_equal(table, want)


def _bf16_chunks(values: np.ndarray, size: int):  # type: ignore[no-untyped-def]
    return lambda: (values[i : i + size] for i in range(0, values.size, size))


@needs_numba
def test_bfloat16_stats_same_with_and_without_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(2_000_003, dtype=np.float32) * 0.02 + 0.001).astype(ml_dtypes.bfloat16)
    x[::1001] = 0
    x[5] = np.nan
    x[7] = -np.inf
    got = {}
    for jit in ("1", "0"):
        monkeypatch.setenv("REPORTGEN_JIT", jit)
        got[jit] = compute_stats(_bf16_chunks(x, 65_537), shape=(x.size,), dtype="bfloat16")
    assert dataclasses.astuple(got["1"]) == dataclasses.astuple(got["0"])
    s = got["1"]
    # Independent float64 NumPy computation of the same numbers.
    f = x.astype(np.float64)
    fin = f[np.isfinite(f)]
    assert (s.count, s.finite, s.nan, s.inf) == (x.size, fin.size, 1, 1)
    assert s.zeros == int(np.count_nonzero(fin == 0))
    assert (s.min, s.max) == (fin.min(), fin.max())
    d = fin - fin.mean()
    var = float(np.mean(d * d))
    for got_v, want in [
        (s.mean, fin.mean()),
        (s.var, var),
        (s.mean_abs, np.abs(fin).mean()),
        (s.skewness, np.mean(d**3) / var**1.5),
        (s.kurtosis, np.mean(d**4) / var**2 - 3.0),
    ]:
        assert math.isclose(got_v, float(want), rel_tol=1e-12, abs_tol=1e-18), (got_v, want)
    assert s.histogram is not None
    want_counts, _ = np.histogram(fin, bins=np.asarray(s.histogram.edges))
    assert s.histogram.counts == tuple(int(c) for c in want_counts)
    assert s.median == float(np.percentile(fin, 50))


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz"])
def test_nonzero_on_bits_matches_comparison(name: str) -> None:
    dt = np.dtype(getattr(ml_dtypes, name, None) or name)
    uint = np.uint16 if dt.itemsize == 2 else np.uint8
    every = np.arange(np.iinfo(uint).max + 1, dtype=uint).view(dt)
    np.testing.assert_array_equal(_nonzero(every), every.astype(np.float32) != 0)


def test_dead_units_of_bfloat16_match_float32() -> None:
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((64, 300), dtype=np.float32)).astype(ml_dtypes.bfloat16)
    w[[3, 40]] = 0
    w[41] = -0.0
    w[7, :-1] = 0
    for layout in ("torch", "keras"):
        chunks = _bf16_chunks(w.reshape(-1), 777)
        want = output_units(w.astype(np.float32), w.shape, layout)
        np.testing.assert_array_equal(output_units(chunks, w.shape, layout), want)
    assert output_units(w, w.shape, "torch").nonzero()[0].tolist() == [3, 40, 41]


def test_mapped_windows_hold_the_file_values(tmp_path: Path) -> None:
    data = np.arange(10_000, dtype=np.float32)
    path = tmp_path / "raw.bin"
    path.write_bytes(b"x" * 12 + data.tobytes())
    pieces = list(iter_file_chunks(path, 12, data.size, np.dtype(np.float32), 3_000, "t"))
    assert [p.size for p in pieces] == [3000, 3000, 3000, 1000]
    assert not any(p.flags.writeable for p in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), data)
    with path.open("r+b") as fh:
        fh.truncate(12 + 7_000 * 4)
    with pytest.raises(SourceError, match=r"raw\.bin: tensor 't': truncated: file ended at byte 28012$"):
        list(iter_file_chunks(path, 12, data.size, np.dtype(np.float32), 3_000, "t"))


def test_cache_dir_falls_back_to_a_writable_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(kernels.os, "access", lambda path, mode: False)
    kernels._cache_dir()
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    assert folder.is_dir() and folder.name.startswith("reportgen-numba-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16, np.int8])
def test_init_check_of_narrow_types_counts_like_float32(dtype: type) -> None:
    from reportgen.initcheck import check_init
    from reportgen.initializers import distribution
    from reportgen.sources.base import InitSpec

    rng = np.random.default_rng(4)
    scale = 40.0 if dtype is np.int8 else 0.05
    w = (rng.uniform(-1.0, 1.0, size=(300, 1000)) * scale).astype(dtype)
    w[0, :50] = 127 if dtype is np.int8 else 0.2  # beyond the bound
    dist = distribution(InitSpec("glorot_uniform"), (1000, 300), "torch", None)
    assert dist is not None
    as_f32 = w.astype(np.float32)
    stats = compute_stats(w)
    narrow = check_init(_bf16_chunks(w.reshape(-1), 70_001), dist, stats, sample_size=5_000)
    wide = check_init(as_f32, dist, compute_stats(as_f32), sample_size=5_000)
    assert narrow.inside_share == wide.inside_share
    assert 0.0 < narrow.inside_share < 1.0
    # The float32 reference counts by hand.
    assert narrow.inside_share * w.size == np.count_nonzero(np.abs(as_f32) <= np.float32(dist.limit * (1 + 1e-6)))
    assert (narrow.ks_stat, narrow.ks_pvalue) == (wide.ks_stat, wide.ks_pvalue)


def test_patterns_from_the_statistics_give_the_same_analysis() -> None:
    from reportgen.initcheck import check_init
    from reportgen.initializers import distribution
    from reportgen.sources.base import InitSpec
    from reportgen.stats import clipped_histogram, stats_and_patterns

    rng = np.random.default_rng(5)
    w = (rng.standard_normal(400_000) * 0.02).astype(ml_dtypes.bfloat16)
    w[:30] = 3.0  # outliers: the readable range is narrower than [min, max]
    chunks = _bf16_chunks(w, 50_000)
    stats, patterns = stats_and_patterns(chunks)
    assert patterns is not None and not patterns.flags.writeable
    assert stats == compute_stats(w)
    dist = distribution(InitSpec("he_normal"), (400, 1000), "torch", None)
    assert dist is not None
    with_table = check_init(chunks, dist, stats, sample_size=10_000, patterns=patterns)
    assert with_table == check_init(chunks, dist, stats, sample_size=10_000)
    f = w.astype(np.float64)
    assert with_table.inside_share * w.size == np.count_nonzero(
        np.abs(w.astype(np.float32)) <= np.float32(3 * dist.std)
    )
    got = clipped_histogram(chunks, -0.05, 0.06, 30, patterns)
    assert got == clipped_histogram(chunks, -0.05, 0.06, 30)
    assert (got.below, got.above) == (np.count_nonzero(f < -0.05), np.count_nonzero(f > 0.06))
    assert got.counts == tuple(int(c) for c in np.histogram(f, bins=30, range=(-0.05, 0.06))[0])


@needs_numba
def test_a_process_switches_to_the_loop_after_many_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPORTGEN_JIT", raising=False)
    monkeypatch.setattr(kernels, "_counted", 0)
    monkeypatch.setattr(kernels, "JIT_AFTER", 1000)
    assert kernels._loops(600) is None
    assert kernels._loops(600) is not None
    monkeypatch.setenv("REPORTGEN_JIT", "0")
    assert kernels._loops(10**9) is None
