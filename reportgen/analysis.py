"""Per-tensor work: statistics, initialisation check, spectral metrics, dead units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reportgen import initializers
from reportgen.diagnosis import InitCheck, check_init
from reportgen.initializers import InitDistribution
from reportgen.sources.base import LayerInfo, TensorRef, WeightSource
from reportgen.spectral import SpectralMetrics, spectral_metrics
from reportgen.stats import TensorStats, compute_stats


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the per-tensor work, from the config."""

    bins: int = 60
    spectral: bool = True
    spectral_max_dim: int = 8192  # skip spectra of matrices whose smaller side exceeds this
    ks_sample: int = 200_000
    spectral_fit: str = "csn"  # csn (Clauset-Shalizi-Newman) | weightwatcher (its xmin rule, for comparison)


@dataclass(frozen=True)
class TensorAnalysis:
    """Everything computed from one tensor's values."""

    layer: str
    param: str
    role: str
    stats: TensorStats
    init: InitDistribution | None
    init_check: InitCheck | None
    spectral: SpectralMetrics | None
    dead_units: int | None  # output units (filters, columns) whose weights are all exactly zero
    units: int | None  # number of output units


def output_units(values: np.ndarray, layout: str) -> np.ndarray:
    """Return a boolean per output unit: True where every weight of that unit is zero."""
    if values.ndim < 2:
        return np.zeros(0, dtype=bool)
    axis_last = layout != "torch"
    moved = np.moveaxis(values, -1 if axis_last else 0, 0).reshape(values.shape[-1 if axis_last else 0], -1)
    return ~np.any(moved != 0, axis=1)


def kernel_shape(layer: LayerInfo) -> tuple[int, ...] | None:
    """Return the shape of the layer's kernel, used for bias fans."""
    k = layer.param("kernel")
    return k.shape if k is not None else None


def analyze_tensor(source: WeightSource, layer: LayerInfo, ref: TensorRef, options: AnalysisOptions) -> TensorAnalysis:
    """Read one tensor and compute everything the report needs from its values."""
    values = source.read(ref)
    stats = compute_stats(np.asarray(values), shape=ref.shape, dtype=ref.dtype, bins=options.bins)
    dist = initializers.distribution(ref.init, ref.shape, ref.layout, kernel_shape(layer))
    check = None
    if dist is not None and stats.finite > 0:
        check = check_init(np.asarray(values), dist, stats, sample_size=options.ks_sample)
    spec = None
    if options.spectral and ref.role in ("kernel", "depthwise_kernel", "pointwise_kernel") and len(ref.shape) >= 2:
        spec = spectral_metrics(
            np.asarray(values), ref.layout, max_dim=options.spectral_max_dim, fit=options.spectral_fit
        )
    dead = units = None
    if ref.role == "kernel" and len(ref.shape) >= 2:
        flags = output_units(np.asarray(values), ref.layout)
        dead, units = int(flags.sum()), int(flags.size)
    return TensorAnalysis(layer.name, ref.name, ref.role, stats, dist, check, spec, dead, units)
