"""Eigenvalues against an independent SVD, and the power-law fit against known exponents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reportgen.spectral import MIN_EVALS, fit_power_law, spectral_metrics, weight_matrices


def _svd_evals(mats: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate([np.linalg.svd(m.astype(np.float64), compute_uv=False) ** 2 for m in mats]))


@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_dense_evals_are_squared_singular_values(shape):
    w = np.random.default_rng(0).standard_normal(shape)
    m = spectral_metrics(w)
    ref = _svd_evals([w])
    assert m.n_evals == 200 and m.n_matrices == 1 and m.matrix_shape == (300, 200)
    np.testing.assert_allclose(m.evals, ref, rtol=1e-9, atol=1e-9 * ref[-1])
    assert m.spectral_norm == pytest.approx(ref[-1], rel=1e-12)
    assert m.stable_rank == pytest.approx(ref.sum() / ref[-1], rel=1e-9)
    assert m.alpha_weighted == pytest.approx(m.alpha * math.log10(ref[-1]))


def test_large_matrix_float32_path_matches_svd():
    w = np.random.default_rng(1).uniform(-0.05, 0.05, (1500, 1100)).astype(np.float32)
    m = spectral_metrics(w)
    ref = _svd_evals([w])
    assert m.precision == "float32"
    # float32 Gram + eigensolver: errors are relative to the largest eigenvalue.
    assert np.abs(m.evals - ref).max() < 1e-5 * ref[-1]


def test_conv_kernel_pools_its_slices_in_both_layouts():
    k = np.random.default_rng(2).standard_normal((3, 3, 16, 24)).astype(np.float32)
    ref = _svd_evals([k[i, j] for i in range(3) for j in range(3)])
    m = spectral_metrics(k, "keras")
    assert m.n_matrices == 9 and m.matrix_shape == (24, 16) and m.n_evals == 9 * 16
    np.testing.assert_allclose(m.evals, ref, rtol=1e-6, atol=1e-10 * ref[-1])
    torch_kernel = np.transpose(k, (3, 2, 0, 1))  # (out, in, kh, kw)
    assert weight_matrices(torch_kernel, "torch").shape == (9, 24, 16)
    torch_evals = spectral_metrics(torch_kernel, "torch").evals
    np.testing.assert_allclose(torch_evals, ref, rtol=1e-6, atol=1e-10 * ref[-1])


def test_stable_rank_of_rank_one_matrix_is_one():
    rng = np.random.default_rng(3)
    w = np.outer(rng.standard_normal(400), rng.standard_normal(100))
    m = spectral_metrics(w)
    assert m.stable_rank == pytest.approx(1.0, abs=1e-9)
    full = spectral_metrics(rng.standard_normal((400, 100)))
    assert full.stable_rank > 20


@pytest.mark.parametrize("alpha", [2.5, 3.0, 4.0])
def test_mle_recovers_pareto_exponent(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    xmin = 2.0
    x = xmin * (1.0 - rng.random(5000)) ** (-1.0 / (alpha - 1.0))  # Pareto: p(x) ~ x^-alpha, x >= xmin
    fit = fit_power_law(x)
    assert abs(fit.alpha - alpha) < 0.15
    assert fit.xmin == pytest.approx(xmin, rel=0.25)
    tail = x[x >= fit.xmin]
    assert fit.n_tail == tail.size
    assert fit.alpha == pytest.approx(1 + tail.size / np.log(tail / fit.xmin).sum(), rel=1e-12)
    assert fit.ks_distance < 0.03


def test_xmin_search_finds_the_tail_above_a_bulk():
    fits = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        bulk = rng.uniform(0.05, 0.9, 4000)
        tail = (1.0 - rng.random(1500)) ** (-1.0 / 2.0)  # alpha 3 from xmin 1
        fits.append(fit_power_law(np.concatenate([bulk, tail])))
    assert all(f.xmin >= 0.99 for f in fits)  # never reaches into the bulk
    assert sum(f.xmin <= 1.5 for f in fits) >= 4
    assert abs(np.median([f.alpha for f in fits]) - 3.0) < 0.1


def test_xmin_search_is_close_to_exhaustive_scan():
    rng = np.random.default_rng(11)
    x = np.sort(np.concatenate([rng.gamma(2.0, 1.0, 3000), 5 * (1 - rng.random(600)) ** (-1 / 2.5)]))
    fit = fit_power_law(x)
    best = math.inf
    for i in range(x.size - 10):  # brute force: two-sided KS of every tail with >= 10 values
        t = x[i:]
        a = 1 + t.size / np.log(t / t[0]).sum()
        cdf = 1 - (t / t[0]) ** (1 - a)
        k = np.arange(t.size)
        best = min(best, max((cdf - k / t.size).max(), ((k + 1) / t.size - cdf).max()))
    assert fit.ks_distance <= best + 0.005
    assert fit == fit_power_law(x, exhaustive=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_search_equals_exhaustive_on_random_spectra(seed):
    # Marchenko-Pastur spectra have flat, noisy KS curves: the hardest case for a grid search.
    k = np.random.default_rng(seed).uniform(-1, 1, (3, 3, 128, 128))
    m = spectral_metrics(k)
    assert m.n_evals == 1152
    exact = fit_power_law(m.evals, exhaustive=True)
    assert (m.alpha, m.xmin, m.ks_distance) == (exact.alpha, exact.xmin, exact.ks_distance)


def test_skips_and_options():
    rng = np.random.default_rng(5)
    assert spectral_metrics(rng.standard_normal(50)) is None
    assert spectral_metrics(rng.standard_normal((100, MIN_EVALS))) is not None
    assert spectral_metrics(rng.standard_normal((100, MIN_EVALS - 1))) is None
    assert spectral_metrics(rng.standard_normal((3, 3, 1, 1))) is not None  # 9 slices of one eigenvalue
    assert spectral_metrics(rng.standard_normal((300, 200)), max_dim=150) is None
    assert spectral_metrics(rng.standard_normal((300, 200)), keep_evals=False).evals is None
    nan_w = rng.standard_normal((30, 20))
    nan_w[0, 0] = np.nan
    assert spectral_metrics(nan_w) is None
    assert math.isnan(fit_power_law(np.ones(5)).alpha)


def test_weightwatcher_ks_rule_matches_a_brute_force_scan():
    rng = np.random.default_rng(13)
    x = np.sort(rng.gamma(3.0, 1.0, 400))
    best = (math.inf, math.nan)
    for i in range(x.size - 2):  # WeightWatcher 0.7: |F - k/n| only, every tail of >= 2 values
        t = x[i:]
        a = 1 + t.size / np.log(t / t[0]).sum()
        d = np.abs(1 - (t / t[0]) ** (1 - a) - np.arange(t.size) / t.size).max()
        best = min(best, (d, a))
    fit = fit_power_law(x, min_tail=2, ks="weightwatcher")
    assert fit.ks_distance == pytest.approx(best[0], abs=1e-12)
    assert fit.alpha == pytest.approx(best[1], rel=1e-12)
    assert fit_power_law(x).n_tail >= 10
    with pytest.raises(ValueError):
        fit_power_law(x, ks="one-sided")


def test_weightwatcher_fit_rule_is_selectable() -> None:
    """The weightwatcher rule fits the same eigenvalues with WeightWatcher's xmin choice."""
    from reportgen.spectral import fit_power_law, spectral_metrics

    rng = np.random.default_rng(3)
    w = rng.standard_t(3, size=(400, 200)).astype(np.float32)
    csn = spectral_metrics(w, "keras")
    ww = spectral_metrics(w, "keras", fit="weightwatcher")
    assert csn is not None and ww is not None
    np.testing.assert_array_equal(csn.evals, ww.evals)
    ev = ww.evals
    want = fit_power_law(ev[ev > 1e-5], min_tail=2, ks="weightwatcher", exhaustive=True)
    assert ww.alpha == want.alpha and ww.n_tail == want.n_tail
    assert csn.spectral_norm == ww.spectral_norm
