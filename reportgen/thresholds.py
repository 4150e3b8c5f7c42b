"""Every number the diagnosis compares against, in one place, each with the reason for its value."""

from __future__ import annotations

from dataclasses import dataclass

# Largest finite float16 value.
FLOAT16_MAX = 65504.0

# A weight is near zero when |w| <= NEAR_ZERO_REL * max|w| of its tensor (stats.near_zero). Magnitude
# pruning keeps weights relative to the layer's largest one, and 1e-3 of it is below the resolution
# that 8-bit symmetric quantisation keeps (max/127): such weights already round to zero there. max|w| is
# known exactly after the first pass, in every chunking and on the 16-bit table path alike, so the count
# needs no extra read and is the same integer on every path. Measured: a fresh uniform draw has 0.10% below
# it, a normal 0.30-0.43% (1 Ki-2 Mi values, max|w| grows with size); HED's trained VGG-16 convs 0.2-4.9%.
NEAR_ZERO_REL = 1e-3


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
    """std / init std above which a weight's scale is noted (info). Measured with `make eval` on the
    weights of seven healthy trained models (165 tensors with a random init): ratios span 0.24-38.9, with
    per-model medians of 0.78 (HED, fine-tuned VGG-16) to 8.3 (silero-vad); silero-vad's convs sit at
    3.2-19x PyTorch's default, NudeNet's first conv (BatchNorm folded in) at 38.9x. So above 10x is
    information about the training (`.venv/bin/python eval/run.py --measure` prints the spread)."""

    exploding_scale_warning: float = 100.0
    """std / init std above which the scale is a warning: 2.6x above the largest ratio of any healthy
    weight measured (38.9x), where a diverging layer or a wrong initializer statement is the likely cause."""

    collapsed_scale_ratio: float = 0.1
    """std / init std below which a weight's scale is noted (info): the smallest of 165 healthy trained
    weights measured is 0.24x (FER mini-Xception's conv2d_2 against glorot_uniform)."""

    collapsed_scale_warning: float = 0.01
    """std / init std below which the collapse is a warning: 24x below any healthy weight measured, a
    layer pruned or decayed away. Biases and single values are never judged by scale."""

    outlier_factor: float = 20.0
    """max |w - mean| / std above which a weight's outliers are noted, as information only: a normal draw
    of 1e9 values reaches ~6.4 std, but healthy trained weights measured with `make eval` reach 50.7
    (HED's VGG block5_conv3), 143 (silero-vad's conv encoder) and 175 (MiniLM's FFN output projection).
    Such tails matter for int8 quantisation ranges, not for correctness."""

    fp16_margin: float = 0.5
    """Share of the float16 maximum (65504) that a float16 tensor's max |w| may reach: above half, one
    doubling (a residual add, a x2 activation) already overflows to inf."""

    fp16_sumsq_max: float = FLOAT16_MAX
    """A float16 tensor whose sum of squares exceeds the float16 maximum overflows wherever its squared
    norm (weight decay, gradient clipping, RMS norms) is accumulated in float16."""

    alpha_min_evals: int = 50
    """Fewest eigenvalues from which a power-law alpha is reported in alerts and hints: a tail fit to the
    27 eigenvalues of a 3x3x3 kernel rests on a handful of points and swings by several units."""

    alpha_band: tuple[float, float] = (2.0, 6.0)
    """Heavy-tailed self-regularisation (Martin & Mahoney): well-trained layers have power-law exponents
    between 2 and 6; below 2 is over-fitted / very heavy-tailed, above 6 looks random (under-trained)."""

    dead_unit_warning_share: float = 0.05
    """Share of all-zero output units from which dead units are a warning rather than info: a few dead
    units occur in healthy ReLU nets and in pruned models, 5% or more wastes a noticeable part of a layer."""

    trained_majority: float = 0.5
    """A model looks trained when more than this share of its layers with a known initializer moved (the
    summary only: a layer at its initial draw beside any moved layer is always alerted)."""

    kurtosis_heavy: float = 1.0
    """Excess kurtosis above which a layer of unknown init is called heavy-tailed (a hint of training):
    uniform, normal and truncated-normal inits all sit at or below 0."""


@dataclass(frozen=True)
class Display:
    """Limits that decide how a number or a tensor is shown to a reader; they never change a verdict."""

    view_widen: float = 0.5
    """A histogram's readable range is [p01, p99] widened by this share of p99 - p01 on each side: a normal
    draw then keeps all but ~3 in a million values inside (+-4.7 std), a uniform one all of them."""

    view_trigger: float = 0.5
    """The readable range replaces the full [min, max] range when it is narrower than this share of it:
    then a few outliers squeeze the bulk of the values into a handful of the histogram's bins (trained VGG-16
    block5_conv3 kernel: 98% of values in 3 of 60 bins; one bias of 12.16 hides the other 511 in one bin)."""

    spectrum_min_evals: int = 50
    """A spectrum panel and its tail fit are shown from this many eigenvalues: a power-law tail needs tens of
    points, and a 3x3x3x64 first convolution (27 x 64 slices) or a 10-class head gives too few to read."""

    pvalue_floor: float = 1e-100
    """p-values below this are written "p < 1e-100": beyond it a float64 KS p-value is dominated by rounding
    and the exact digits carry no information a reader can use."""


DEFAULT = Thresholds()


@dataclass(frozen=True)
class ReleaseThresholds:
    """Limits that turn the change between two releases into alerts and history events."""

    std_ratio_band: tuple[float, float] = (0.5, 2.0)
    """New std / old std outside this band is a warning: fine-tuning a trained layer moves its std by a
    few percent (the HED backbone's layers sit within 0.7-1.3x of ImageNet VGG-16's), so halving or
    doubling between two releases of the same model points to a re-initialised, rescaled or broken layer."""

    rel_change_alert: float = 0.5
    """||W_new - W_old|| / ||W_old|| above this is a warning: the tensor moved by more than half its own
    size; a fresh re-draw of the same initializer gives ~1.41 (two independent draws), fine-tuning ~0.01-0.3."""

    history_move: float = 0.05
    """Relative change of a layer's std or mean |w| between consecutive releases from which the history
    counts it as moved: a re-run of the same build changes nothing (0), while a 5% step is visible in the
    figures and well above float32 rounding of the statistics."""


@dataclass(frozen=True)
class FindingThresholds:
    """Limits that decide which sentences the findings write; they never change a verdict or an alert."""

    trend_rho: float = 0.5
    """A rank correlation of this size or more between mean |w| and depth, with end points that agree, is
    called a trend (rises or falls); below it the values show no steady trend."""

    head_narrowing: int = 16
    """A layer at the end of the main path whose output is this many times narrower than the path's median
    width is a scoring head (HED's 1-channel side outputs), not part of the feature hierarchy."""

    steeper: float = 1.5
    """An end-to-end change of mean |w| this many times the initializer's own is said to be training's doing."""


RELEASES = ReleaseThresholds()
DISPLAY = Display()
FINDINGS = FindingThresholds()
