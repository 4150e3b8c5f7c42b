"""Sentences written from the numbers: init bounds, dead biases, depth trends, comparisons."""

from __future__ import annotations

import math

import numpy as np

from reportgen.formatting import plain
from reportgen.report_model import Comparison, Finding, ModelView
from reportgen.selection import friendly, is_batchnorm

# The limit of each uniform initializer, as Keras defines it (fans as in initializers.py).
_UNIFORM_LIMITS = {
    "glorot_uniform": "±√(6/(fan_in+fan_out))",
    "he_uniform": "±√(6/fan_in)",
    "lecun_uniform": "±√(3/fan_in)",
}


def _init_bounds(m: ModelView) -> list[Finding]:
    """Say whether kernels stay inside the bound of their (uniform) initializer."""
    inside, outside, worst = 0, [], (0.0, "")
    kinds: set[str] = set()
    for layer in m.weighted_layers:
        a = m.analysis(layer.name, "kernel")
        if a is None or a.init is None or a.init.family != "uniform" or not a.init.limit:
            continue
        kinds.add(a.init.spec.kind)
        r = a.stats.max_abs / a.init.limit
        if r > worst[0]:
            worst = (r, layer.name)
        if a.stats.max_abs <= a.init.limit * (1 + 1e-6):
            inside += 1
        else:
            outside.append((r, layer.name))
    total = inside + len(outside)
    if not total:
        return []
    init = "/".join(sorted(kinds))
    formula = _UNIFORM_LIMITS.get(init)
    bound = f"{init} bound {formula}" if formula else f"{init} bound"
    if not outside:
        return [
            Finding(
                f"All {total} kernels of {m.name} lie inside their {bound}: "
                f"the largest |w| is {plain(worst[0], 6)} of its limit ({worst[1]}).",
                m.name,
                worst[1],
                "init",
            )
        ]
    outside.sort(reverse=True)
    r, name = outside[0]
    return [
        Finding(
            f"{len(outside)} of {total} kernels of {m.name} exceed the bound of their {init} initializer; "
            f"the largest |w| in {name} is {plain(r, 3)}× the initial limit.",
            m.name,
            name,
            "init",
        )
    ]


def _biases(m: ModelView) -> list[Finding]:
    """Report biases that are exactly zero, and whether BatchNormalization explains them."""
    out: list[Finding] = []
    by_type: dict[str, list[tuple[str, bool, bool]]] = {}
    names = {layer.name: layer for layer in m.layers}
    for layer in m.weighted_layers:
        a = m.analysis(layer.name, "bias")
        if a is None or a.role != "bias":
            continue
        zero = a.stats.count > 0 and a.stats.zeros == a.stats.count
        feeds_bn = any(is_batchnorm(names[f].class_name) for f in layer.feeds if f in names)
        by_type.setdefault(layer.class_name, []).append((layer.name, zero, feeds_bn))
    for kind, rows in by_type.items():
        zeros = [r for r in rows if r[1]]
        if not zeros:
            continue
        words = f"{kind} biases of {m.name}"
        if len(rows) == 1:
            text = f"The {kind} bias of {m.name} ({zeros[0][0]}) is exactly 0"
        elif len(zeros) == len(rows):
            text = f"All {len(rows)} {words} are exactly 0"
        else:
            text = f"{len(zeros)} of {len(rows)} {words} are exactly 0"
        bn = [r for r in zeros if r[2]]
        if bn and len(bn) == len(zeros):
            which = "it is" if len(rows) == 1 else "each is"
            text += f"; {which} followed by BatchNormalization, which removes any bias, so it never trains."
        elif bn:
            verb = "feeds" if len(bn) == 1 else "feed"
            text += f"; {len(bn)} of them {verb} BatchNormalization, which makes a bias redundant."
        else:
            text += " (its initial value)." if len(rows) == 1 else " (their initial value)."
        out.append(Finding(text, m.name, zeros[0][0], "bias"))
    return out


def _depth_trend(m: ModelView) -> list[Finding]:
    """Describe how mean |w| of convolution kernels changes with depth."""
    out: list[Finding] = []
    for kind in ("Conv2D", "Conv2d", "Conv1D", "Dense", "Linear"):
        rows = [
            (layer.name, a.stats.mean_abs)
            for layer in m.weighted_layers
            if layer.class_name == kind and (a := m.analysis(layer.name, "kernel")) is not None
        ]
        if len(rows) < 3:
            continue
        values = np.array([v for _, v in rows])
        rho = float(np.corrcoef(np.arange(len(values)), np.argsort(np.argsort(values)))[0, 1])
        drops = values[:-1] / np.maximum(values[1:], 1e-300)
        k = int(np.argmax(drops))
        direction = "falls" if rho < -0.5 else ("rises" if rho > 0.5 else "shows no steady trend")
        out.append(
            Finding(
                f"Mean |w| of the {len(rows)} {friendly(kind)} kernels of {m.name} {direction} with depth "
                f"(rank correlation {plain(rho, 2)}): {plain(values[0])} in {rows[0][0]}, "
                f"{plain(values[-1])} in {rows[-1][0]}; the biggest step down is "
                f"{plain(drops[k], 3)}× after {rows[k][0]}.",
                m.name,
                rows[0][0],
                "trend",
            )
        )
    return out


def _shape_words(kurt: float) -> str:
    if math.isnan(kurt):
        return "constant"
    if kurt < -1.0:
        return "flat, uniform-like"
    if kurt < 0.5:
        return "close to normal"
    return "heavy-tailed"


def _comparison(c: Comparison) -> Finding:
    """Compare one layer across models: spread and distribution shape."""
    (n0, a0), *rest = c.entries
    parts = [f"{n0}: std {plain(a0.stats.std)}, excess kurtosis {plain(a0.stats.kurtosis, 3)}"]
    for n, a in rest:
        r = a.stats.std / a0.stats.std if a0.stats.std else float("nan")
        parts.append(
            f"{n}: std {plain(a.stats.std)} ({plain(r, 3)}×), excess kurtosis {plain(a.stats.kurtosis, 3)} "
            f"({_shape_words(a.stats.kurtosis)})"
        )
    return Finding(f"{c.layer} {c.param} — " + "; ".join(parts) + ".", None, c.layer, "comparison")


def write_findings(models: list[ModelView] | tuple[ModelView, ...], comparisons: list[Comparison]) -> list[Finding]:
    """Return the findings for the report, model by model, then comparisons."""
    out: list[Finding] = []
    for m in models:
        out += _init_bounds(m) + _biases(m) + _depth_trend(m)
    out += [_comparison(c) for c in comparisons if c.param in ("kernel", "weight")]
    return out
