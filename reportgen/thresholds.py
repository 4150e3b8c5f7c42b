"""Every number the diagnosis compares against, in one place, each with the reason for its value."""

from __future__ import annotations

from dataclasses import dataclass

# Largest finite float16 value.
FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class Thresholds:
    """Limits that turn per-tensor numbers into verdicts and alerts."""

    ks_pvalue_floor: float = 1e-3
    """Family-wise KS p-value floor per model: a fresh draw's p-value is uniform, so with m layers tested the
    floor applied to each is this divided by m (Bonferroni). A 107-layer untrained ResNet50 then calls a
    layer moved by chance once in 1000 reports instead of once in 10; training moves p-values to ~1e-10."""

    std_ratio_band: tuple[float, float] = (0.9, 1.1)
    """Empirical / theoretical std still counted as at-init: a fresh draw of a few thousand values lands
    within 1-3% of 1, and the KS test catches smaller changes anyway; 10% leaves room for float16 rounding."""

    std_ratio_sampling_z: float = 4.0
    """The band is widened to 4 standard errors of the sample std for tiny tensors (a 27-value kernel's
    std wanders +-20%), so a fresh small draw is never called moved on its scale alone."""

    inside_bound_min: float = 0.999
    """Share of values within a uniform's limit or a truncated normal's cut required at init: a fresh draw
    has all of them inside; 0.1% slack absorbs values that float32 rounding puts one ulp outside."""

    normal_inside_sigmas: float = 3.0
    """Plain normals have no bound; the share within 3 std (expected 0.9973) is reported, not required."""

    exploding_scale_ratio: float = 10.0
    """std / init std above which the scale has blown up: weight decay and normal training keep trained
    layers within ~0.3-3x of their init scale, so 10x points to divergence or a missing normalisation."""

    collapsed_scale_ratio: float = 0.1
    """std / init std below which the layer has collapsed towards zero (e.g. over-strong weight decay or
    a layer pruned away): an order of magnitude below init is not reached by ordinary training."""

    outlier_factor: float = 20.0
    """max |w - mean| / std above which a tensor holds extreme outliers: a normal draw of 1e9 values
    reaches ~6.4 std, heavy-tailed trained layers ~10-15; 20 singles out the few weights that dominate
    quantisation ranges."""

    fp16_margin: float = 0.5
    """Share of the float16 maximum (65504) that a float16 tensor's max |w| may reach: above half, one
    doubling (a residual add, a x2 activation) already overflows to inf."""

    fp16_sumsq_max: float = FLOAT16_MAX
    """A float16 tensor whose sum of squares exceeds the float16 maximum overflows wherever its squared
    norm (weight decay, gradient clipping, RMS norms) is accumulated in float16."""

    exploding_scale_warning: float = 100.0
    """PLACEHOLDER"""

    collapsed_scale_warning: float = 0.01
    """PLACEHOLDER"""

    alpha_min_evals: int = 50
    """PLACEHOLDER"""

    alpha_band: tuple[float, float] = (2.0, 6.0)
    """Heavy-tailed self-regularisation (Martin & Mahoney): well-trained layers have power-law exponents
    between 2 and 6; below 2 is over-fitted / very heavy-tailed, above 6 looks random (under-trained)."""

    dead_unit_warning_share: float = 0.05
    """Share of all-zero output units from which dead units are a warning rather than info: a few dead
    units occur in healthy ReLU nets and in pruned models, 5% or more wastes a noticeable part of a layer."""

    trained_majority: float = 0.5
    """A model looks trained when more than this share of its layers with a known initializer moved."""

    kurtosis_heavy: float = 1.0
    """Excess kurtosis above which a layer of unknown init is called heavy-tailed (a hint of training):
    uniform, normal and truncated-normal inits all sit at or below 0."""

    kurtosis_uniform_like: float = -0.9
    """Excess kurtosis below which a layer of unknown init is called flat like a uniform draw (uniform: -1.2),
    a hint that it was not trained."""


DEFAULT = Thresholds()
