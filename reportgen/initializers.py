"""The distribution a tensor was drawn from at initialisation, with Keras's fan rules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reportgen.sources.base import InitSpec

# Keras truncates normals at two standard deviations; this is the std of the unit normal
# truncated there, which Keras divides out so that the truncated draw keeps the wanted std.
TRUNC_STD_FACTOR = 0.87962566103423978

# (scale, mode, distribution) of the named VarianceScaling presets in Keras.
_PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}

KNOWN_KINDS = (
    *_PRESETS,
    "variance_scaling",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "orthogonal",
    "zeros",
    "ones",
    "constant",
    "pytorch_default",
    "keras_lstm_bias",
)


def spec_from_name(name: str, origin: str = "config") -> InitSpec:
    """Make an InitSpec from a config statement such as 'glorot_uniform' or 'pytorch_default'."""
    return InitSpec(kind=name, origin=origin)


def compute_fans(shape: tuple[int, ...], layout: str = "keras") -> tuple[int, int]:
    """Return (fan_in, fan_out) as Keras computes them; layout 'torch' reads (out, in, *k)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if layout == "torch":
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@dataclass(frozen=True)
class InitDistribution:
    """A concrete distribution: family, its parameters, and the fans they came from."""

    spec: InitSpec
    family: str  # uniform | normal | truncated_normal | constant | orthogonal
    fan_in: int | None
    fan_out: int | None
    scale: float | None  # variance of one draw before truncation (the Keras 'scale / n')
    std: float  # theoretical std of a drawn value
    limit: float | None  # half-width of a uniform; cut point of a truncated normal
    mean: float = 0.0
    base_std: float | None = None  # sigma of the normal before truncation
    forget_gate_ones: bool = False  # constant: Keras LSTM bias, zeros but ones on the forget gate's quarter

    @property
    def variance(self) -> float:
        """Theoretical variance of a drawn value."""
        return self.std**2

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution function, for the Kolmogorov-Smirnov test."""
        from scipy import stats as sps

        if self.family == "uniform":
            assert self.limit is not None
            return sps.uniform.cdf(x, loc=self.mean - self.limit, scale=2 * self.limit)
        if self.family == "truncated_normal":
            assert self.base_std is not None
            return sps.truncnorm.cdf(x, -2.0, 2.0, loc=self.mean, scale=self.base_std)
        if self.family in ("normal", "orthogonal"):
            return sps.norm.cdf(x, loc=self.mean, scale=self.std)
        return np.where(np.asarray(x) < self.mean, 0.0, 1.0)

    def describe(self) -> str:
        """One human-readable line, e.g. 'U(-0.0998, +0.0998)'."""
        if self.family == "uniform":
            return f"U({self.mean - self.limit:+.4g}, {self.mean + self.limit:+.4g})"  # type: ignore[operator]
        if self.family == "truncated_normal":
            return f"N({self.mean:.3g}, {self.base_std:.4g}^2) cut at +-{self.limit:.4g}"
        if self.family == "normal":
            return f"N({self.mean:.3g}, {self.std:.4g}^2)"
        if self.family == "orthogonal":
            return f"orthogonal, entries ~ N(0, {self.std:.4g}^2)"
        if self.forget_gate_ones:
            return "zeros, ones on the forget gate (unit_forget_bias)"
        return f"constant {self.mean:g}"

    def constant_values(self, offset: int, size: int, total: int) -> np.ndarray | float:
        """Return the initial value at flat positions offset..offset+size of a constant-family tensor."""
        if not self.forget_gate_ones:
            return self.mean
        pos = np.arange(offset, offset + size)
        quarter = total // 4
        return ((pos >= quarter) & (pos < 2 * quarter)).astype(np.float64)


def _variance_scaling(spec: InitSpec, scale: float, mode: str, dist: str, fans: tuple[int, int]) -> InitDistribution:
    fan_in, fan_out = fans
    n = {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2.0)
    s = scale / max(1.0, n)
    if dist == "uniform":
        limit = math.sqrt(3.0 * s)
        return InitDistribution(spec, "uniform", fan_in, fan_out, s, math.sqrt(s), limit)
    if dist == "truncated_normal":
        base = math.sqrt(s) / TRUNC_STD_FACTOR
        return InitDistribution(spec, "truncated_normal", fan_in, fan_out, s, math.sqrt(s), 2 * base, 0.0, base)
    return InitDistribution(spec, "normal", fan_in, fan_out, s, math.sqrt(s), None, 0.0, math.sqrt(s))


def distribution(
    spec: InitSpec | None,
    shape: tuple[int, ...],
    layout: str = "keras",
    kernel_shape: tuple[int, ...] | None = None,
) -> InitDistribution | None:
    """Return the distribution that spec draws for a tensor of this shape; None if unknown.

    kernel_shape is the layer's kernel, needed for PyTorch's default bias bound.
    """
    if spec is None:
        return None
    kind = spec.kind
    fans = compute_fans(shape, layout)
    if kind in _PRESETS:
        return _variance_scaling(spec, *_PRESETS[kind], fans)
    if kind == "variance_scaling":
        return _variance_scaling(
            spec,
            float(spec.param("scale", 1.0)),
            str(spec.param("mode", "fan_in")),
            str(spec.param("distribution", "truncated_normal")),
            fans,
        )
    if kind == "random_normal":
        std = float(spec.param("stddev", 0.05))
        return InitDistribution(spec, "normal", None, None, std**2, std, None, float(spec.param("mean", 0.0)), std)
    if kind == "truncated_normal":
        base = float(spec.param("stddev", 0.05))
        mean = float(spec.param("mean", 0.0))
        return InitDistribution(
            spec, "truncated_normal", None, None, base**2, base * TRUNC_STD_FACTOR, 2 * base, mean, base
        )
    if kind == "random_uniform":
        lo, hi = float(spec.param("minval", -0.05)), float(spec.param("maxval", 0.05))
        half = (hi - lo) / 2
        return InitDistribution(spec, "uniform", None, None, half**2 / 3, half / math.sqrt(3), half, (lo + hi) / 2)
    if kind == "orthogonal":
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        cols = shape[-1] if shape else 1
        std = float(spec.param("gain", 1.0)) / math.sqrt(max(rows, cols))
        return InitDistribution(spec, "orthogonal", *fans, std**2, std, None)
    if kind == "keras_lstm_bias":
        return InitDistribution(spec, "constant", None, None, 0.0, 0.0, None, 0.0, forget_gate_ones=True)
    if kind in ("zeros", "ones", "constant"):
        value = {"zeros": 0.0, "ones": 1.0}.get(kind, float(spec.param("value", 0.0)))
        return InitDistribution(spec, "constant", None, None, 0.0, 0.0, None, value)
    if kind == "pytorch_default":
        # kaiming_uniform_(a=sqrt(5)) on weights, U(+-1/sqrt(fan_in)) on biases: both bound 1/sqrt(fan_in).
        ref = kernel_shape if (len(shape) <= 1 and kernel_shape) else shape
        fan_in, fan_out = compute_fans(ref, layout)
        bound = 1.0 / math.sqrt(max(1, fan_in))
        return InitDistribution(spec, "uniform", fan_in, fan_out, bound**2 / 3, bound / math.sqrt(3), bound)
    return None
