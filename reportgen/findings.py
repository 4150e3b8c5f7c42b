"""Sentences written from the numbers: init bounds, dead biases, depth trends, comparisons."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from reportgen.formatting import plain
from reportgen.layer_kinds import TREND_FAMILIES, is_batchnorm
from reportgen.report_model import Comparison, Finding, ModelView, trend_kernels
from reportgen.selection import friendly
from reportgen.thresholds import FINDINGS

# The limit of each uniform initializer, as Keras defines it (fans as in initializers.py).
_UNIFORM_LIMITS = {
    "glorot_uniform": "±√(6/(fan_in+fan_out))",
    "he_uniform": "±√(6/fan_in)",
    "lecun_uniform": "±√(3/fan_in)",
}
# Importance of each kind of finding, for ranking: what needs action first, comparisons last.
IMPORTANCE = {"init": 0.6, "bias": 0.7, "trend": 0.4, "comparison": 0.3}


def _ratio_words(r: float) -> str:
    """Write a ratio to its limit with enough digits that a value below 1 never prints as 1."""
    if r >= 1.0:
        return "at its limit, up to the float32 rounding of the bound"
    for digits in range(6, 10):
        text = plain(r, digits)
        if float(text) < 1.0:
            return f"{text} of its limit"
    return "just under its limit (within 1e-9)"


def _init_bounds(m: ModelView) -> list[Finding]:
    """Say whether kernels stay inside the bound of their (uniform) initializer."""
    inside, outside, worst = 0, [], (0.0, "")
    kinds: set[str] = set()
    for layer in m.weighted_layers:
        ref = layer.param("kernel")
        a = m.analysis(layer.name, ref.name) if ref is not None else None
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
        lead = (
            f"The one kernel of {m.name} with a uniform initializer lies"
            if total == 1
            else (f"All {total} kernels of {m.name} lie")
        )
        return [
            Finding(
                f"{lead} inside {'its' if total == 1 else 'their'} {bound}: "
                f"the largest |w|, in {worst[1]}, is {_ratio_words(worst[0])}.",
                m.name,
                worst[1],
                "init",
                round(IMPORTANCE["init"] - 0.3, 2),  # a confirmation, not a problem
            )
        ]
    outside.sort(reverse=True)
    r, name = outside[0]
    return [
        Finding(
            f"{len(outside)} of {total} kernels of {m.name} {'exceeds' if total == 1 else 'exceed'} the bound of "
            f"{'its' if total == 1 else 'their'} {init} initializer; "
            f"the largest |w| in {name} is {plain(r, 3)}× the initial limit.",
            m.name,
            name,
            "init",
            IMPORTANCE["init"],
        )
    ]


def _shows_training(m: ModelView) -> bool:
    """Tell whether the weights themselves show training: layers moved from their initial draw."""
    diagnosis = getattr(m, "diagnosis", None)
    source = getattr(m, "source", None)
    return bool(diagnosis is not None and diagnosis.moved) or getattr(source, "trained", None) is True


def _zero_init(a: Any) -> bool | None:
    """Return True when a bias's initializer is the constant 0, False when it draws other values, None unknown."""
    init = getattr(a, "init", None)
    if init is None:
        return None
    return bool(init.family == "constant" and init.mean == 0.0)


def _biases(m: ModelView) -> list[Finding]:
    """Report biases that are exactly zero, and whether BatchNormalization explains them."""
    out: list[Finding] = []
    by_type: dict[str, list[tuple[str, bool, bool, bool | None]]] = {}
    names = {layer.name: layer for layer in m.layers}
    for layer in m.weighted_layers:
        a = m.analysis(layer.name, "bias")
        if a is None or a.role != "bias":
            continue
        zero = a.stats.count > 0 and a.stats.zeros == a.stats.count
        feeds_bn = any(is_batchnorm(names[f].class_name) for f in layer.feeds if f in names)
        by_type.setdefault(layer.class_name, []).append((layer.name, zero, feeds_bn, _zero_init(a)))
    trained = _shows_training(m)
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
        one = len(rows) == 1
        bn = [r for r in zeros if r[2]]
        inits = {r[3] for r in zeros}
        if inits == {True}:
            text += " (its initial value)" if one else " (their initial value)"
        if bn and len(bn) == len(zeros) and trained:
            # Only where other layers moved is a zero bias evidence that training left it alone.
            which = "it is" if one else "each is"
            text += f"; {which} followed by BatchNormalization, which removes any bias, so it never trains"
        elif bn:
            if one:
                lead = "it feeds"
            elif len(bn) == len(zeros):
                lead = "each feeds"
            else:
                lead = f"{len(bn)} of them {'feeds' if len(bn) == 1 else 'feed'}"
            text += f"; {lead} BatchNormalization, which makes a bias redundant"
        if inits == {False}:
            what = "its initializer draws" if one else "their initializer draws"
            text += f"; {what} nonzero values, so 0 was set after initialisation"
        text += "."
        weight = IMPORTANCE["bias"] if trained or inits == {False} else round(IMPORTANCE["bias"] - 0.4, 2)
        out.append(Finding(text, m.name, zeros[0][0], "bias", weight))
    return out


def _in_out(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """Return (input width, output width) of a kernel."""
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    if layout == "torch":
        return shape[1], shape[0]
    return shape[-2], shape[-1]


def _longest_chain(n: int, edges: dict[int, set[int]]) -> list[int]:
    """Return the longest path through a DAG whose edges go from lower to higher index."""
    best = [1] * n
    prev = [-1] * n
    for v in range(n):
        for u in range(v):
            if v in edges.get(u, ()) and best[u] + 1 > best[v]:
                best[v], prev[v] = best[u] + 1, u
    if not n:
        return []
    v = int(np.argmax(best))
    path = []
    while v != -1:
        path.append(v)
        v = prev[v]
    return path[::-1]


def main_path(m: ModelView, names: Sequence[str], widths: Sequence[tuple[int, int]]) -> list[int]:
    """Return the indexes (into names) of the layers on the network's main path, heads trimmed off."""
    pos = {name: i for i, name in enumerate(names)}
    by_name = {layer.name: layer for layer in m.layers}
    edges: dict[int, set[int]] = {}
    graph = any(by_name[n].feeds for n in names if n in by_name)
    for i, name in enumerate(names):
        if graph:
            # Follow consumers through layers of other types until a layer of this type is reached.
            todo, seen = list(by_name[name].feeds), set()
            while todo:
                f = todo.pop()
                if f in seen or f not in by_name:
                    continue
                seen.add(f)
                if f in pos:
                    if pos[f] > i:
                        edges.setdefault(i, set()).add(pos[f])
                else:
                    todo.extend(by_name[f].feeds)
        else:
            # No graph in the file: a layer follows another when its input width is the other's output width.
            edges[i] = {j for j in range(i + 1, len(names)) if widths[j][0] == widths[i][1]}
    chain = _longest_chain(len(names), edges)
    median = float(np.median([widths[i][1] for i in chain])) if chain else 0.0
    while len(chain) > 3 and widths[chain[-1]][1] * FINDINGS.head_narrowing <= median:
        chain.pop()
    return chain


def _rank_corr(values: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(values))
    if np.all(ranks == ranks[0]) or len(values) < 2:
        return 0.0
    return float(np.corrcoef(np.arange(len(values)), ranks)[0, 1])


def direction(values: np.ndarray) -> str:
    """Return 'falls', 'rises' or 'shows no steady trend' for values in depth order (rank and end points agree)."""
    rho = _rank_corr(values)
    if rho <= -FINDINGS.trend_rho and values[-1] < values[0]:
        return "falls"
    if rho >= FINDINGS.trend_rho and values[-1] > values[0]:
        return "rises"
    return "shows no steady trend"


def _step_words(values: np.ndarray, names: list[str], way: str) -> str:
    """Describe the largest step in the trend's own direction, or the range when there is no trend."""
    if way == "falls":
        steps = values[:-1] / np.maximum(values[1:], 1e-300)
        k = int(np.argmax(steps))
        return f"the biggest step down is {plain(steps[k], 3)}× from {names[k]} to {names[k + 1]}"
    if way == "rises":
        steps = values[1:] / np.maximum(values[:-1], 1e-300)
        k = int(np.argmax(steps))
        return f"the biggest step up is {plain(steps[k], 3)}× from {names[k]} to {names[k + 1]}"
    lo, hi = int(np.argmin(values)), int(np.argmax(values))
    return f"it ranges from {plain(values[lo])} ({names[lo]}) to {plain(values[hi])} ({names[hi]})"


def _init_trend(analyses: list[Any], values: np.ndarray, way: str) -> str:
    """Say whether the initializers' own std already has the trend (the fan rule), when every init is known."""
    stds = [a.init.std for a in analyses if a.init is not None and a.init.family != "constant" and a.init.std > 0]
    if len(stds) != len(analyses) or way not in ("falls", "rises"):
        return ""
    init_way = direction(np.array(stds))
    if init_way == way:
        start, now = _overall(np.array(stds)), _overall(values)
        change = now / start
        if change >= FINDINGS.steeper:
            effect = f"; training made it {plain(change, 3)}× stronger end to end"
        elif change <= 1 / FINDINGS.steeper:
            effect = f"; training made it {plain(1 / change, 3)}× weaker end to end"
        else:
            effect = ""
        return (
            f"; their initializer's std already {way} the same way ({plain(stds[0])} to {plain(stds[-1])}, "
            f"{plain(start, 3)}× end to end against {plain(now, 3)}× in the weights), "
            f"so the trend is present at initialisation{effect}"
        )
    return f"; their initializer's std {init_way} with depth, so the trend arose after initialisation"


def _overall(values: np.ndarray) -> float:
    """Return the end-to-end change as a factor of at least 1, in whichever direction it goes."""
    a, b = float(values[0]), float(values[-1])
    return max(a, b) / max(min(a, b), 1e-300)


def _depth_trend(m: ModelView) -> list[Finding]:
    """Describe how mean |w| of kernels changes with depth along the main path."""
    out: list[Finding] = []
    for family in TREND_FAMILIES:
        kernels = trend_kernels(m, family)
        rows = [(layer.name, a, _in_out(ref.shape, ref.layout)) for layer, ref, a in kernels]
        if len(rows) < 3:
            continue
        chain = main_path(m, [r[0] for r in rows], [r[2] for r in rows])
        if len(chain) < 3:
            continue
        names = [rows[i][0] for i in chain]
        analyses = [rows[i][1] for i in chain]
        values = np.array([a.stats.mean_abs for a in analyses])
        way = direction(values)
        left = [r[0] for i, r in enumerate(rows) if i not in chain]
        classes = {kernels[i][0].class_name for i in chain}
        # One layer type keeps its own words (1-D convolutional); a mix takes the family's.
        words = friendly(classes.pop()) if len(classes) == 1 else family
        scope = f"the {len(chain)} {words} kernels of {m.name}"
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
            scope = (
                f"the {len(chain)} {words} kernels on the main path of {m.name} "
                f"(left out as side branches or narrow heads: {shown})"
            )
        out.append(
            Finding(
                f"Mean |w| of {scope} {way} with depth (rank correlation {plain(_rank_corr(values), 2)}): "
                f"{plain(values[0])} in {names[0]}, {plain(values[-1])} in {names[-1]}; "
                f"{_step_words(values, names, way)}{_init_trend(analyses, values, way)}.",
                m.name,
                names[0],
                "trend",
                IMPORTANCE["trend"],
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
    return Finding(
        f"{c.layer} {c.param} — " + "; ".join(parts) + ".", None, c.layer, "comparison", IMPORTANCE["comparison"]
    )


def write_findings(models: list[ModelView] | tuple[ModelView, ...], comparisons: list[Comparison]) -> list[Finding]:
    """Return the findings for the report, model by model, then comparisons."""
    out: list[Finding] = []
    for m in models:
        out += _init_bounds(m) + _biases(m) + _depth_trend(m)
    out += [_comparison(c) for c in comparisons if c.param in ("kernel", "weight")]
    return out
