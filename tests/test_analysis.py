"""Per-tensor analysis: a tensor read in chunks gives exactly what the whole array gives."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen import spectral
from reportgen.analysis import AnalysisOptions, analyze_tensor, output_units
from reportgen.initializers import spec_from_name
from reportgen.sources.detect import open_path


def _weights(rng: np.random.Generator, shape: tuple[int, ...], dead_axis: int, dead: list[int]) -> np.ndarray:
    w = rng.uniform(-0.05, 0.05, shape).astype(np.float32)
    index: list[object] = [slice(None)] * len(shape)
    index[dead_axis] = dead
    w[tuple(index)] = 0.0
    return w


def _all_tensors(path: Path, init: str) -> list[tuple[object, object, object]]:
    source = open_path(path, init=spec_from_name(init))
    return [(source, layer, ref) for layer in source.layers() for ref in layer.params]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "weights.h5"])
def test_streamed_analysis_equals_whole_array(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(7)
    if fmt == "safetensors":
        # PyTorch layout (out, in): 1.5 M values, so 1 Mi-element chunks end inside a unit's run.
        kernel = _weights(rng, (1500, 1000), 0, [3, 1499])
        kernel[10, 20] = np.nan
        path = tmp_path / "m.safetensors"
        save_file({"fc.weight": kernel, "fc.bias": np.zeros(1500, np.float32)}, str(path))
        init = "pytorch_default"
    else:
        # Keras layout (in, out) with 1500 units: chunks end mid-row.
        kernel = _weights(rng, (1000, 1500), 1, [0, 777])
        path = tmp_path / "m.weights.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=kernel)
            f.create_dataset("layers/dense/vars/1", data=np.zeros(1500, np.float32))
        init = "glorot_uniform"
    whole = AnalysisOptions()
    streamed = AnalysisOptions(stream_elems=0)
    for source, layer, ref in _all_tensors(path, init):
        a = analyze_tensor(source, layer, ref, whole)  # type: ignore[arg-type]
        b = analyze_tensor(source, layer, ref, streamed)  # type: ignore[arg-type]
        assert repr(a) == repr(b)
        if ref.role == "kernel":  # type: ignore[attr-defined]
            assert a.dead_units == 2 and a.units == 1500
            assert a.init_check is not None and a.init_check.ks_sample == 200_000


@pytest.mark.parametrize("layout", ["keras", "torch"])
def test_dead_units_agree_with_numpy_for_any_chunking(layout: str) -> None:
    rng = np.random.default_rng(3)
    shape = (3, 3, 7, 11) if layout == "keras" else (11, 7, 3, 3)
    w = rng.standard_normal(shape).astype(np.float32)
    axis = -1 if layout == "keras" else 0
    for unit in (0, 4, 10):
        np.moveaxis(w, axis, 0)[unit] = 0.0
    expected = ~np.moveaxis(w, axis, 0).reshape(11, -1).any(axis=1)
    flat = w.reshape(-1)
    for size in (1, 5, 63, 77, 100, flat.size):
        got = output_units(lambda s=size: (flat[i : i + s] for i in range(0, flat.size, s)), shape, layout)
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(output_units(w, shape, layout), expected)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1500, 1100), (1100, 1500)])
def test_blocked_gram_matches_svd(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int]) -> None:
    """The float32 Gram matrix built a block of rows at a time (panels for W W^T) has the SVD's spectrum."""
    w = np.random.default_rng(1).uniform(-0.05, 0.05, shape).astype(np.float32)
    ref = np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2)
    one = spectral.spectral_metrics(w)
    monkeypatch.setattr(spectral, "_GRAM_BLOCK", 150_000)  # about 100 rows per block
    monkeypatch.setattr(spectral, "_PANEL", 200_000)  # W W^T of the wide matrix: 11 panels of 100 rows
    blocked = spectral.spectral_metrics(w)
    assert one is not None and blocked is not None and blocked.precision == "float32"
    # float32 Gram product and eigensolver: errors relative to the largest eigenvalue.
    assert np.abs(blocked.evals - ref).max() < 3e-5 * ref[-1]
    assert blocked.spectral_norm == pytest.approx(one.spectral_norm, rel=1e-5)
    w[5, 7] = np.inf
    assert spectral.spectral_metrics(w) is None
