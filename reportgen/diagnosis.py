"""Is each layer trained? Compare tensors with their initializer, and raise alerts from the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reportgen.initcheck import InitCheck, fresh_draw_failures
from reportgen.layer_kinds import is_batchnorm
from reportgen.sources.base import LayerInfo, TensorRef
from reportgen.spectral import SpectralMetrics
from reportgen.thresholds import DEFAULT, FLOAT16_MAX, Thresholds
from reportgen.vocab import SEVERITIES, STATUS_WORDS, STATUSES, Severity, Status

if TYPE_CHECKING:
    from reportgen.analysis import TensorAnalysis

WEIGHT_ROLES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embedding", "recurrent_kernel")
NOT_JUDGED_ROLES = ("moving_mean", "moving_variance")
KNOWN_WEIGHTS = (*WEIGHT_ROLES, "bias", "gamma", "beta")
# Dtypes whose values training updates by gradient; integer and bool tensors are indices, masks or codes.
_FLOAT_PREFIXES = ("float", "bfloat")
BN_BIAS_NOTE = "bias unused: BatchNormalization after it subtracts the batch mean, so its gradient is zero"


@dataclass(frozen=True)
class Verdict:
    """Whether one layer still holds its initial weights, with the evidence."""

    layer: str
    class_name: str
    status: Status
    label: str  # short human label of the status
    reason: str  # one line with the numbers behind the status
    param: str | None  # the tensor the verdict rests on (the kernel where there is one)
    evidence: InitCheck | None
    moved_by: tuple[tuple[str, float], ...] = ()  # how far from init: std ratio, KS distance, kurtosis change
    notes: tuple[str, ...] = ()  # explanations (e.g. a bias made unused by BatchNormalization)
    hint: bool = False  # True when the reason is a guess without a known initializer


@dataclass(frozen=True)
class Alert:
    """One finding worth a reader's attention, with the numbers that raised it."""

    code: str  # stable id, e.g. "at-init-in-trained-model", "non-finite", "dead-units"
    severity: Severity
    model: str
    layer: str
    param: str | None
    message: str  # one line: what is wrong and why it matters
    numbers: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ModelDiagnosis:
    """Per-layer verdicts, the model's summary, and its alerts in severity then layer order."""

    model: str
    verdicts: tuple[Verdict, ...]
    alerts: tuple[Alert, ...]
    summary: str  # e.g. "13 of 16 layers look untrained (at initialisation)"
    looks_trained: bool | None  # most layers with a known init moved; None when no layer has one
    at_init: int
    moved: int
    unknown_init: int
    no_weights: int


def judged(ref: TensorRef) -> bool:
    """Tell whether a tensor is one training updates, so that it gets a verdict and alerts."""
    return ref.trainable and ref.role not in NOT_JUDGED_ROLES and ref.dtype.startswith(_FLOAT_PREFIXES)


def _primary(layer: LayerInfo, found: list[tuple[str, str, TensorAnalysis]]) -> tuple[str, TensorAnalysis]:
    """Pick the tensor a layer's verdict rests on: its kernel, else a tensor with a known init."""
    for role in WEIGHT_ROLES:
        for name, r, ta in found:
            if r == role:
                return name, ta
    for name, _, ta in found:
        if ta.init is not None:
            return name, ta
    return found[0][0], found[0][2]


def _unknown_hint(ta: TensorAnalysis, t: Thresholds) -> str:
    k = ta.stats.kurtosis
    if math.isfinite(k) and k > t.kurtosis_heavy:
        text = f"excess kurtosis {k:.2g}: heavier tails than any common init draws, a sign of training"
    elif math.isfinite(k):
        # Kurtosis at or below 0 does not tell: layers drawn from a uniform keep about -1.1 through training.
        text = f"excess kurtosis {k:.2g}, as common inits have, so the values alone cannot tell"
    else:
        text = "no finite values"
    sp = ta.spectral
    if isinstance(sp, SpectralMetrics) and math.isfinite(sp.alpha) and sp.n_evals >= t.alpha_min_evals:
        lo, hi = t.alpha_band
        where = "inside" if lo <= sp.alpha <= hi else "outside"
        text += f"; spectral alpha {sp.alpha:.2f} {where} the trained band [{lo:g}, {hi:g}]"
    return f"no initializer known; {text} (hint)"


def layer_verdict(
    layer: LayerInfo, analyses: dict[tuple[str, str], TensorAnalysis], t: Thresholds = DEFAULT
) -> Verdict:
    """Decide whether one layer is still at its initialisation."""
    keys = [(p, (layer.name, p.name)) for p in layer.params if judged(p)]
    found = [(p.name, p.role, analyses[key]) for p, key in keys if key in analyses]
    head = (layer.name, layer.class_name)
    if not found:
        reason = "no tensor of this layer was read"
        return Verdict(*head, "no_weights", STATUS_WORDS["no_weights"].label, reason, None, None)
    param, ta = _primary(layer, found)
    check = ta.init_check if isinstance(ta.init_check, InitCheck) else None
    if ta.init is None:
        reason = _unknown_hint(ta, t)
        return Verdict(*head, "unknown_init", STATUS_WORDS["unknown_init"].label, reason, param, None, hint=True)
    kind = ta.init.spec.kind
    if check is None:
        reason = f"{param} has no finite values, so it is not a fresh {kind} draw"
        return Verdict(*head, "moved", STATUS_WORDS["moved"].label, reason, param, None)
    failures = fresh_draw_failures(check, t)
    if check.family == "constant":
        share = check.const_share if check.const_share is not None else float("nan")
        moved_by: tuple[tuple[str, float], ...] = (("changed_share", 1.0 - share),)
        if not failures:
            reason = f"{param} still exactly at its init {ta.init.mean:g} (all {ta.stats.count} values)"
        else:
            reason = f"{param} moved from its constant init {ta.init.mean:g}: {failures[0]}"
    else:
        moved_by = (
            ("std_ratio", check.std_ratio),
            ("ks_distance", check.ks_stat),
            ("ks_pvalue", check.ks_pvalue),
            ("kurtosis_change", check.kurtosis_change),
        )
        if not failures:
            reason = (
                f"{param} consistent with a fresh {kind} draw {ta.init.describe()}: "
                f"KS p={check.ks_pvalue:.2g}, std ratio {check.std_ratio:.3f}"
            )
            if check.bounded:
                reason += f", {check.inside_share:.1%} inside the bound"
        else:
            reason = (
                f"{param} moved from its {kind} init: {'; '.join(failures)}; "
                f"kurtosis {check.expected_kurtosis:.2f} -> {check.kurtosis:.2f}"
            )
    status: Status = "moved" if failures else "at_init"
    notes: tuple[str, ...] = ()
    sp = ta.spectral
    if status == "at_init" and isinstance(sp, SpectralMetrics) and math.isfinite(sp.alpha):
        notes = (f"spectral alpha {sp.alpha:.3g} describes a random matrix here, not the quality of training",)
    return Verdict(*head, status, STATUS_WORDS[status].label, reason, param, check, moved_by, notes)


def _feeds_batch_norm(layer: LayerInfo, by_name: dict[str, LayerInfo], after: LayerInfo | None) -> bool:
    """Tell whether a BatchNorm consumes the layer: from the graph, else the next layer of a flat file."""
    for name in layer.feeds:
        consumer = by_name.get(name) or by_name.get(name.rsplit("/", 1)[-1])
        if consumer is not None and is_batchnorm(consumer.class_name):
            return True
    if layer.feeds or after is None or not is_batchnorm(after.class_name):
        return False
    # Flat name->tensor files record no graph: a BatchNorm of the bias's width right after it is its consumer.
    bias, gamma = layer.param("bias"), after.param("gamma") or after.param("moving_mean")
    return bias is not None and gamma is not None and bias.shape == gamma.shape


def _tensor_alerts(model: str, layer: LayerInfo, ta: TensorAnalysis, verdict: Verdict, t: Thresholds) -> list[Alert]:
    """Return the alerts raised by one tensor's own numbers."""
    s, out = ta.stats, []

    def alert(code: str, severity: Severity, message: str, *numbers: tuple[str, float]) -> None:
        out.append(Alert(code, severity, model, layer.name, ta.param, message, tuple(numbers)))

    if s.nan or s.inf:
        if ta.role in KNOWN_WEIGHTS:
            msg = f"{s.nan} NaN and {s.inf} Inf values: any computation that uses this tensor yields NaN or Inf"
            alert("non-finite", "critical", msg, ("nan", s.nan), ("inf", s.inf), ("count", s.count))
        else:
            # A tensor of no known role may be a graph constant: -inf is a legitimate mask value or clamp bound.
            msg = (
                f"{s.nan} NaN and {s.inf} Inf values in a tensor of unknown role: a mask or bound constant "
                "holds such values; a weight would make every output NaN or Inf"
            )
            alert("non-finite", "info" if not s.nan else "warning", msg, ("nan", s.nan), ("inf", s.inf))
    constant = s.finite > 1 and s.max == s.min
    constant_init = ta.init is not None and ta.init.family == "constant"
    # A norm's scale of all ones (or shift of zeros) is its initial value in every framework.
    norm_default = ta.role in ("gamma", "beta") and s.min == (1.0 if ta.role == "gamma" else 0.0)
    if constant and ta.role in (*WEIGHT_ROLES, "gamma") and not constant_init and not norm_default:
        severity: Severity = "critical" if ta.role in WEIGHT_ROLES else "warning"
        msg = f"all {s.count} values equal {s.min:g}: its units compute the same function, so none can specialise"
        alert("constant-tensor", severity, msg, ("value", s.min), ("count", s.count))
    if ta.dead_units and ta.units and not (constant and s.min == 0):
        share = ta.dead_units / ta.units
        severity = "warning" if share >= t.dead_unit_warning_share else "info"
        out_is = "only their bias" if layer.param("bias") is not None else "zero"
        msg = f"{ta.dead_units} of {ta.units} output units have all-zero weights and output {out_is}"
        numbers: tuple[tuple[str, float], ...] = (("dead_units", ta.dead_units), ("units", ta.units), ("share", share))
        alert("dead-units", severity, msg, *numbers)
    check = ta.init_check if isinstance(ta.init_check, InitCheck) else None
    # Scale alerts for weights only: a bias's size follows the data, not the fan rule (and folded BatchNorm
    # shifts make trained conv biases 100x PyTorch's init bound in healthy models).
    scaled = ta.role in WEIGHT_ROLES and check is not None and check.family != "constant"
    if scaled and check is not None and math.isfinite(check.std_ratio) and not constant:
        r = check.std_ratio
        if r > t.exploding_scale_ratio:
            severity = "warning" if r > t.exploding_scale_warning else "info"
            msg = (
                f"std is {r:.3g}x its init std (> {t.exploding_scale_ratio:g}x); training without weight decay "
                "can do this, a diverging layer or a wrong initializer statement too"
            )
            alert("exploding-scale", severity, msg, ("std_ratio", r), ("std", s.std))
        elif r < t.collapsed_scale_ratio:
            severity = "warning" if r < t.collapsed_scale_warning else "info"
            msg = (
                f"std is {r:.3g}x its init std (< {t.collapsed_scale_ratio:g}x): strong weight decay, pruning, "
                "or a different initializer than the one assumed"
            )
            alert("collapsed-scale", severity, msg, ("std_ratio", r), ("std", s.std))
    if ta.role in WEIGHT_ROLES and s.std > 0:
        factor = max(abs(s.max - s.mean), abs(s.min - s.mean)) / s.std
        if factor > t.outlier_factor:
            msg = (
                f"max |w - mean| is {factor:.3g} std (> {t.outlier_factor:g}): a few weights set its range, "
                "which matters for int8 quantisation; trained layers often have such tails"
            )
            numbers = (("outlier_factor", factor), ("max_abs", s.max_abs), ("std", s.std))
            alert("extreme-outliers", "info", msg, *numbers)
    if s.dtype == "float16" and s.finite:
        sumsq = s.l2**2
        if s.max_abs > t.fp16_margin * FLOAT16_MAX:
            msg = f"max |w| {s.max_abs:.5g} is within {1 / t.fp16_margin:g}x of the float16 limit 65504"
            alert("fp16-overflow-risk", "warning", msg, ("max_abs", s.max_abs), ("float16_max", FLOAT16_MAX))
        elif sumsq > t.fp16_sumsq_max:
            msg = f"sum of squares {sumsq:.4g} overflows a float16 accumulator (max {FLOAT16_MAX:g})"
            alert("fp16-overflow-risk", "info", msg, ("sum_squares", sumsq), ("float16_max", FLOAT16_MAX))
    sp = ta.spectral
    usable = isinstance(sp, SpectralMetrics) and math.isfinite(sp.alpha) and sp.n_evals >= t.alpha_min_evals
    if usable and verdict.status == "moved":
        assert isinstance(sp, SpectralMetrics)
        lo, hi = t.alpha_band
        if not lo <= sp.alpha <= hi:
            why = "a very heavy-tailed spectrum" if sp.alpha < lo else "a spectrum close to a random matrix's"
            msg = (
                f"spectral alpha {sp.alpha:.2f} from {sp.n_evals} eigenvalues is outside [{lo:g}, {hi:g}]: {why}, "
                "which Martin & Mahoney relate to over- or under-training"
            )
            alert("alpha-out-of-band", "info", msg, ("alpha", sp.alpha), ("n_evals", sp.n_evals))
    return out


def _bias_findings(
    model: str, layer: LayerInfo, ta: TensorAnalysis, verdict: Verdict, feeds_bn: bool
) -> tuple[str | None, Alert | None]:
    """Explain or flag a bias still exactly at its constant init, or exactly zero; return (note, alert)."""
    check = ta.init_check if isinstance(ta.init_check, InitCheck) else None
    if ta.role != "bias":
        return None, None
    s = ta.stats
    if (check is None or check.family != "constant") and s.count > 1 and s.zeros == s.count:
        # A bias drawn at random (PyTorch's U(+-1/sqrt(fan_in))) or trained does not stay exactly 0.
        if feeds_bn:
            return "bias exactly 0: BatchNormalization after it subtracts the batch mean, so it has no effect", None
        if verdict.status != "moved":
            return None, None
        msg = (
            f"all {s.count} values are exactly 0 although the {verdict.param} moved and the assumed initializer "
            "does not draw zeros: the bias may have been zeroed, disabled or not loaded"
        )
        return None, Alert("zero-bias", "warning", model, layer.name, ta.param, msg, (("count", float(s.count)),))
    if check is None or check.family != "constant":
        return None, None
    if check.const_share != 1.0:
        # The bias trained while the kernel kept its initial draw: bias-only fine-tuning, or a frozen kernel.
        if verdict.status == "at_init":
            share = 1.0 - (check.const_share or 0.0)
            return f"bias moved ({share:.0%} of values left their initial constant) while the kernel is at init", None
        return None, None
    if feeds_bn:
        return BN_BIAS_NOTE, None
    if verdict.status != "moved":
        return None, None
    value = ta.init.mean if ta.init is not None else 0.0
    msg = (
        f"all {ta.stats.count} values still exactly at their init {value:g} although the {verdict.param} moved: "
        "a bias that trains leaves its constant, so it may be frozen, unused or not loaded"
    )
    numbers = (("value", value), ("count", float(ta.stats.count)))
    return None, Alert("bias-at-init", "warning", model, layer.name, ta.param, msg, numbers)


def _summary(at_init: int, moved: int, unknown: int, no_weights: int) -> str:
    known = at_init + moved
    if known == 0:
        text = "no layer has a known initializer, so none can be compared with its initial state"
    elif at_init == 0:
        text = f"all {known} layers with a known initializer moved away from it"
    elif moved == 0:
        text = f"all {known} layers with a known initializer look untrained (at initialisation)"
    else:
        text = f"{at_init} of {known} layers look untrained (at initialisation)"
    if known and unknown:
        text += f"; {unknown} more have no known initializer"
    if no_weights:
        text += f"; {no_weights} were not read"
    return text


def diagnose_model(
    model: str,
    layers: list[LayerInfo],
    analyses: dict[tuple[str, str], TensorAnalysis],
    thresholds: Thresholds = DEFAULT,
) -> ModelDiagnosis:
    """Give every layer with parameters a verdict, summarise the model, and collect its alerts."""
    # Bonferroni: one floor for the whole model, so that many untouched layers don't yield a false 'moved'.
    tested = sum(
        1
        for layer in layers
        for p in layer.params
        if p.role == "kernel" and (ta := analyses.get((layer.name, p.name))) is not None and ta.init_check
    )
    t = replace(thresholds, ks_pvalue_floor=thresholds.ks_pvalue_floor / max(1, tested))
    by_name = {layer.name: layer for layer in layers}
    by_name.update({layer.name.rsplit("/", 1)[-1]: layer for layer in layers if "/" in layer.name})
    verdicts: list[Verdict] = []
    position: dict[str, int] = {}
    ranked: list[tuple[int, int, Alert]] = []
    for pos, layer in enumerate(layers):
        if not any(judged(p) for p in layer.params):
            continue  # buffers, index vectors and graph constants are listed but not judged
        verdict = layer_verdict(layer, analyses, t)
        after = next((n for n in layers[pos + 1 :] if n.params), None)
        feeds_bn = _feeds_batch_norm(layer, by_name, after)
        notes = []
        for p in layer.params:
            ta = analyses.get((layer.name, p.name))
            if ta is None or not judged(p):
                continue
            for a in _tensor_alerts(model, layer, ta, verdict, t):
                ranked.append((SEVERITIES.index(a.severity), pos, a))
            note, alert = _bias_findings(model, layer, ta, verdict, feeds_bn)
            if note:
                notes.append(note)
            if alert:
                ranked.append((SEVERITIES.index(alert.severity), pos, alert))
        if notes:
            verdict = replace(verdict, notes=verdict.notes + tuple(notes))
        verdicts.append(verdict)
        position[layer.name] = pos
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    known = counts["at_init"] + counts["moved"]
    trained = counts["moved"] / known > t.trained_majority if known else None
    if counts["moved"] and counts["at_init"]:
        # Whatever the share: one layer at its fresh draw beside layers that moved is worth a look.
        for v in (v for v in verdicts if v.status == "at_init"):
            numbers = tuple((k, x) for k, x in v.moved_by if k in ("ks_pvalue", "std_ratio", "changed_share"))
            numbers += (("at_init_layers", float(counts["at_init"])), ("moved_layers", float(counts["moved"])))
            msg = (
                f"{v.layer} is indistinguishable from its initial draw while {counts['moved']} of {known} layers "
                f"with a known initializer moved ({counts['at_init']} at init): it may be frozen, re-initialised "
                "or not loaded, or it trained less than the test can resolve"
            )
            alert = Alert("at-init-in-trained-model", "warning", model, v.layer, v.param, msg, numbers)
            ranked.append((1, position[v.layer], alert))
    ranked.sort(key=lambda r: (r[0], r[1]))  # stable: within a layer, tensor order is kept
    return ModelDiagnosis(
        model=model,
        verdicts=tuple(verdicts),
        alerts=tuple(a for _, _, a in ranked),
        summary=_summary(counts["at_init"], counts["moved"], counts["unknown_init"], counts["no_weights"]),
        looks_trained=trained,
        at_init=counts["at_init"],
        moved=counts["moved"],
        unknown_init=counts["unknown_init"],
        no_weights=counts["no_weights"],
    )
