"""Compare two reports: structure, per-tensor statistics, verdicts, alerts and, when the files remain, the weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from reportgen.diff_weights import Change, compare_weights
from reportgen.stats_json import (
    AlertDoc,
    HistogramDoc,
    LayerDoc,
    LoadedStats,
    ModelDoc,
    ParamDoc,
    Severity,
    StatsDoc,
)
from reportgen.thresholds import RELEASES
from reportgen.vocab import SEVERITIES

DIFF_SCHEMA_VERSION = "1.1"
SEVERITY_ORDER: tuple[Severity, ...] = SEVERITIES  # most severe first
# Verdict moves that mean a layer lost its training between releases.
VERDICT_REGRESSIONS = frozenset({("moved", "at_init")})
# How many of the biggest moves per model get an overlaid histogram beside the alerted tensors.
TOP_N = 6
# Alerted tensors drawn per model at most: a broken release can alert on hundreds of tensors.
MAX_FIGURES = 12
# Two models of different names are the same model renamed when this share of their tensors match.
RENAME_MATCH = 0.5


@dataclass(frozen=True)
class TensorRefDiff:
    """A tensor that exists on one side only, or whose shape changed."""

    layer: str
    param: str
    old_shape: tuple[int, ...] | None
    new_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor present on both sides with the same shape changed."""

    layer: str
    param: str
    role: str
    shape: tuple[int, ...]
    mean_old: float | None
    mean_new: float | None
    mean_delta: float | None
    std_old: float | None
    std_new: float | None
    std_ratio: float | None  # new / old
    max_abs_old: float | None
    max_abs_new: float | None
    max_abs_delta: float | None
    rel_change: float | None  # ||W_new - W_old||_F / ||W_old||_F; None without weights or when W_old = 0
    abs_change: float | None  # ||W_new - W_old||_F
    cosine: float | None  # <W_old, W_new> / (||W_old|| ||W_new||)
    nonfinite_old: int
    nonfinite_new: int
    changed: bool  # False when the values (or, without weights, every statistic) are identical

    @property
    def score(self) -> float | None:
        """Return how much the tensor changed: relative change, else |log std ratio|."""
        if self.rel_change is not None:
            return self.rel_change
        if self.std_ratio is not None and self.std_ratio > 0:
            return abs(math.log(self.std_ratio))
        return None


@dataclass(frozen=True)
class VerdictChange:
    """A layer whose diagnosis changed between the reports."""

    layer: str
    old: str
    new: str
    regression: bool


@dataclass(frozen=True)
class DiffAlert:
    """A shift large enough to point out."""

    severity: Severity
    code: str  # std_shift | large_change | verdict_regression | nonfinite_appeared
    model: str
    layer: str
    param: str | None
    message: str


@dataclass(frozen=True)
class Overlay:
    """Both sides' histograms of one changed tensor, for an overlaid figure, with why it is shown."""

    model: str
    layer: str
    param: str
    role: str
    old: HistogramDoc
    new: HistogramDoc
    why: str


@dataclass(frozen=True)
class ModelDiff:
    """Everything that changed in one pair of matched models."""

    old_name: str
    new_name: str
    added_layers: tuple[str, ...]
    removed_layers: tuple[str, ...]
    retyped_layers: tuple[tuple[str, str, str], ...]  # (layer, old class, new class)
    added_tensors: tuple[TensorRefDiff, ...]
    removed_tensors: tuple[TensorRefDiff, ...]
    reshaped_tensors: tuple[TensorRefDiff, ...]
    tensors: tuple[TensorDiff, ...]  # matched tensors, in the new model's layer order
    verdict_changes: tuple[VerdictChange, ...]
    weights_compared: int  # tensors whose values were compared
    weights_note: str  # why values were or were not compared

    @property
    def name(self) -> str:
        """Return a display name: one name, or old -> new when they differ."""
        return self.new_name if self.old_name == self.new_name else f"{self.old_name} → {self.new_name}"

    @property
    def changed(self) -> tuple[TensorDiff, ...]:
        """Return the matched tensors whose values changed."""
        return tuple(t for t in self.tensors if t.changed)

    @property
    def unchanged_count(self) -> int:
        """Return how many matched tensors are identical."""
        return sum(not t.changed for t in self.tensors)

    @property
    def structure_changed(self) -> bool:
        """Return whether layers or tensors were added, removed, retyped or reshaped."""
        return bool(
            self.added_layers
            or self.removed_layers
            or self.retyped_layers
            or self.added_tensors
            or self.removed_tensors
            or self.reshaped_tensors
        )

    def top(self, n: int = TOP_N) -> tuple[TensorDiff, ...]:
        """Return the n changed tensors that moved most, biggest first."""
        ranked = [t for t in self.changed if t.score is not None and t.score > 0]
        ranked.sort(key=lambda t: (t.rel_change is None, -(t.score or 0.0), t.layer, t.param))
        return tuple(ranked[:n])


@dataclass(frozen=True)
class Side:
    """One of the compared reports, as described in the diff."""

    name: str  # short, unique within the diff: the release folder, else the title, else old/new
    path: str  # as given on the command line or in compare_to
    title: str | None
    generated_at: str | None
    tool_version: str
    schema_version: str  # as read, before any upgrade
    model_count: int


@dataclass(frozen=True)
class DiffModel:
    """The whole comparison, ready for the renderers."""

    old: Side
    new: Side
    models: tuple[ModelDiff, ...]
    unmatched_old: tuple[str, ...]  # models removed
    unmatched_new: tuple[str, ...]  # models added
    alerts: tuple[DiffAlert, ...]
    new_alerts: tuple[AlertDoc, ...]  # the new report's alerts that the old one did not raise
    resolved_alerts: tuple[AlertDoc, ...]  # the old report's alerts that the new one no longer raises
    overlays: tuple[Overlay, ...]

    def alert_counts(self) -> dict[str, int]:
        """Return the number of comparison alerts per severity, most severe first."""
        out: dict[str, int] = dict.fromkeys(SEVERITY_ORDER, 0)
        for a in self.alerts:
            out[a.severity] += 1
        return out

    @property
    def tensor_count(self) -> int:
        """Return how many tensors were matched across all models."""
        return sum(len(m.tensors) for m in self.models)

    @property
    def changed_count(self) -> int:
        """Return how many matched tensors changed."""
        return sum(len(m.changed) for m in self.models)


# ---------------------------------------------------------------- comparing


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None or old == 0 else new / old


def _tensors(model: ModelDoc) -> set[tuple[str, str, tuple[int, ...]]]:
    return {(layer.name, p.name, p.shape) for layer in model.layers for p in layer.params}


def match_models(
    old: tuple[ModelDoc, ...], new: tuple[ModelDoc, ...]
) -> tuple[list[tuple[ModelDoc, ModelDoc]], list[str], list[str]]:
    """Pair models by name, then the rest by the tensors they share (a renamed model)."""
    if len(old) == 1 and len(new) == 1:
        return [(old[0], new[0])], [], []
    by_name = {m.name: m for m in old}
    pairs = [(by_name[m.name], m) for m in new if m.name in by_name]
    rest_old = [m for m in old if m.name not in {n.name for n in new}]
    rest_new = [m for m in new if m.name not in by_name]
    for n in list(rest_new):
        tn = _tensors(n)
        best, share = None, 0.0
        for o in rest_old:
            to = _tensors(o)
            s = len(to & tn) / max(len(to | tn), 1)
            if s > share:
                best, share = o, s
        if best is not None and share >= RENAME_MATCH:
            pairs.append((best, n))
            rest_old.remove(best)
            rest_new.remove(n)
    return pairs, [m.name for m in rest_old], [m.name for m in rest_new]


_SAME_FIELDS = ("count", "nan", "inf", "zeros", "mean", "std", "min", "max", "mean_abs", "max_abs", "l2")


def _same_stats(a: StatsDoc | None, b: StatsDoc | None) -> bool:
    """Return whether two tensors' statistics and histograms are identical."""
    if a is None or b is None:
        return a is b
    return all(getattr(a, f) == getattr(b, f) for f in _SAME_FIELDS) and a.histogram == b.histogram


def _tensor_diff(layer: str, po: ParamDoc, pn: ParamDoc, change: Change | None) -> TensorDiff:
    so, sn = po.stats, pn.stats
    mo, mn = (so.mean if so else None), (sn.mean if sn else None)
    do, dn = (so.std if so else None), (sn.std if sn else None)
    xo, xn = (so.max_abs if so else None), (sn.max_abs if sn else None)
    rel, dist, cos = change if change is not None else (None, None, None)
    nf_o, nf_n = (so.nonfinite if so else 0), (sn.nonfinite if sn else 0)
    # Compared values decide; with NaN on either side (no norms) or no weights, the statistics do.
    changed = (dist != 0.0) if dist is not None else not _same_stats(so, sn)
    return TensorDiff(
        layer=layer,
        param=pn.name,
        role=pn.role,
        shape=pn.shape,
        mean_old=mo,
        mean_new=mn,
        mean_delta=_sub(mn, mo),
        std_old=do,
        std_new=dn,
        std_ratio=_ratio(dn, do),
        max_abs_old=xo,
        max_abs_new=xn,
        max_abs_delta=_sub(xn, xo),
        rel_change=rel,
        abs_change=dist,
        cosine=cos,
        nonfinite_old=nf_o,
        nonfinite_new=nf_n,
        changed=changed or nf_o != nf_n,
    )


def _match_layer(
    name: str, lo: LayerDoc, ln: LayerDoc
) -> tuple[list[TensorRefDiff], list[TensorRefDiff], list[TensorRefDiff], list[tuple[str, ParamDoc, ParamDoc]]]:
    """Split one layer's tensors into added, removed, reshaped and matched."""
    po = {p.name: p for p in lo.params}
    pn = {p.name: p for p in ln.params}
    added, reshaped, matched = [], [], []
    for pname, p in pn.items():
        q = po.get(pname)
        if q is None:
            added.append(TensorRefDiff(name, pname, None, p.shape))
        elif q.shape != p.shape:
            reshaped.append(TensorRefDiff(name, pname, q.shape, p.shape))
        else:
            matched.append((name, q, p))
    removed = [TensorRefDiff(name, n, q.shape, None) for n, q in po.items() if n not in pn]
    return added, removed, reshaped, matched


def compare_models(
    old: ModelDoc,
    new: ModelDoc,
    *,
    weights: bool = True,
    bases: tuple[Path | None, Path | None] = (None, None),
) -> ModelDiff:
    """Compare one pair of models from two stats documents."""
    lo = {layer.name: layer for layer in old.layers}
    ln = {layer.name: layer for layer in new.layers}
    retyped, add_t, rem_t, reshaped, verdicts = [], [], [], [], []
    matched: list[tuple[str, ParamDoc, ParamDoc]] = []
    for name, layer_n in ln.items():
        layer_o = lo.get(name)
        if layer_o is None:
            continue
        if layer_o.class_name != layer_n.class_name:
            retyped.append((name, layer_o.class_name, layer_n.class_name))
        vo, vn = layer_o.status, layer_n.status
        if vo and vn and vo != vn:
            verdicts.append(VerdictChange(name, vo, vn, (vo, vn) in VERDICT_REGRESSIONS))
        a, r, s, m = _match_layer(name, layer_o, layer_n)
        add_t += a
        rem_t += r
        reshaped += s
        matched += m
    changes: dict[tuple[str, str], Change] = {}
    note = "weights not compared (statistics only)"
    if weights and matched:
        wanted = [(layer, p.name, p.shape) for layer, _, p in matched]
        changes, note = compare_weights(old, new, wanted, bases)
    return ModelDiff(
        old_name=old.name,
        new_name=new.name,
        # Layers without tensors (inputs, pooling) hold no weights to compare, and Keras names them by a
        # process-wide counter (input_layer, input_layer_2, ...): listing them would report noise.
        added_layers=tuple(n for n, layer in ln.items() if n not in lo and layer.params),
        removed_layers=tuple(n for n, layer in lo.items() if n not in ln and layer.params),
        retyped_layers=tuple(retyped),
        added_tensors=tuple(add_t),
        removed_tensors=tuple(rem_t),
        reshaped_tensors=tuple(reshaped),
        tensors=tuple(_tensor_diff(layer, q, p, changes.get((layer, p.name))) for layer, q, p in matched),
        verdict_changes=tuple(verdicts),
        weights_compared=len(changes),
        weights_note=note,
    )


def model_alerts(m: ModelDiff) -> list[DiffAlert]:
    """Return the alerts one model's changes raise, most severe first."""
    out: list[DiffAlert] = []
    lo, hi = RELEASES.std_ratio_band
    rel_max = RELEASES.rel_change_alert
    for v in m.verdict_changes:
        if v.regression:
            message = f"verdict went from {v.old} to {v.new}"
            out.append(DiffAlert("critical", "verdict_regression", m.new_name, v.layer, None, message))
    for t in m.tensors:
        if t.nonfinite_new > t.nonfinite_old:
            n = t.nonfinite_new - t.nonfinite_old
            message = f"{n} NaN/Inf value{'s' if n != 1 else ''} appeared"
            out.append(DiffAlert("critical", "nonfinite_appeared", m.new_name, t.layer, t.param, message))
        if t.std_ratio is not None and not lo <= t.std_ratio <= hi:
            message = f"std changed {t.std_ratio:.3g}× (outside [{lo:g}, {hi:g}])"
            out.append(DiffAlert("warning", "std_shift", m.new_name, t.layer, t.param, message))
        if t.rel_change is not None and t.rel_change > rel_max:
            message = f"relative change {t.rel_change:.3g} > {rel_max:g}"
            out.append(DiffAlert("warning", "large_change", m.new_name, t.layer, t.param, message))
    out.sort(key=lambda a: SEVERITY_ORDER.index(a.severity))
    return out


def _alert_key(a: AlertDoc, renames: dict[str, str]) -> tuple[str, str, str, str | None]:
    return (a.code, renames.get(a.model, a.model), a.layer, a.param)


def _alert_changes(
    old: tuple[AlertDoc, ...], new: tuple[AlertDoc, ...], renames: dict[str, str]
) -> tuple[tuple[AlertDoc, ...], tuple[AlertDoc, ...]]:
    """Return the build alerts new in the new report, and those it no longer raises."""
    old_keys = {_alert_key(a, renames) for a in old}
    new_keys = {_alert_key(a, {}) for a in new}
    appeared = [a for a in new if _alert_key(a, {}) not in old_keys]
    gone = [a for a in old if _alert_key(a, renames) not in new_keys]
    rank = SEVERITY_ORDER.index
    return tuple(sorted(appeared, key=lambda a: rank(a.severity))), tuple(sorted(gone, key=lambda a: rank(a.severity)))


def _overlays(model: ModelDiff, old: ModelDoc, new: ModelDoc, alerts: list[DiffAlert]) -> list[Overlay]:
    """Pick the tensors to draw: every alerted one (up to a cap), then the biggest moves."""
    hist_o = {(layer.name, p.name): p.stats for layer in old.layers for p in layer.params}
    hist_n = {(layer.name, p.name): p.stats for layer in new.layers for p in layer.params}
    by_key = {(t.layer, t.param): t for t in model.tensors}
    why: dict[tuple[str, str], str] = {}
    for a in alerts:
        if a.param is not None and len(why) < MAX_FIGURES:
            why.setdefault((a.layer, a.param), a.message)
    for v in model.verdict_changes:
        kernel = next((t for t in model.tensors if t.layer == v.layer and t.changed), None)
        if kernel is not None and len(why) < MAX_FIGURES:
            why.setdefault((kernel.layer, kernel.param), f"verdict {v.old} → {v.new}")
    for t in model.top(TOP_N):
        if len(why) >= TOP_N:
            break
        shown = f"relative change {t.rel_change:.3g}" if t.rel_change is not None else f"std ×{t.std_ratio:.3g}"
        why.setdefault((t.layer, t.param), shown)
    out = []
    for key, text in why.items():
        so, sn, td = hist_o.get(key), hist_n.get(key), by_key.get(key)
        if td is None or so is None or sn is None or so.histogram is None or sn.histogram is None:
            continue
        out.append(Overlay(model.name, td.layer, td.param, td.role, so.histogram, sn.histogram, text))
    return out


def _names(old: LoadedStats, new: LoadedStats) -> tuple[str, str]:
    """Return short, distinct names of the two releases for legends and headings."""
    if old.release != new.release:
        return old.release, new.release
    to, tn = old.doc.title or "", new.doc.title or ""
    if to and tn and to != tn:
        return to, tn
    return "old", "new"


def _side(s: LoadedStats, name: str, path: str) -> Side:
    return Side(
        name=name,
        path=path,
        title=s.doc.title,
        generated_at=s.doc.generated_at,
        tool_version=s.doc.tool.version,
        schema_version=s.read_version,
        model_count=len(s.doc.models),
    )


def compute_diff(
    old: LoadedStats, new: LoadedStats, *, old_label: str, new_label: str, weights: bool = True
) -> DiffModel:
    """Compare two loaded reports."""
    pairs, only_old, only_new = match_models(old.doc.models, new.doc.models)
    bases = (old.folder, new.folder)
    models = tuple(compare_models(o, n, weights=weights, bases=bases) for o, n in pairs)
    alerts: list[DiffAlert] = []
    overlays: list[Overlay] = []
    for (o, n), m in zip(pairs, models, strict=True):
        found = model_alerts(m)
        alerts += found
        overlays += _overlays(m, o, n, found)
    renames = {o.name: n.name for o, n in pairs}
    appeared, gone = _alert_changes(old.doc.alerts, new.doc.alerts, renames)
    name_old, name_new = _names(old, new)
    return DiffModel(
        old=_side(old, name_old, old_label),
        new=_side(new, name_new, new_label),
        models=models,
        unmatched_old=tuple(only_old),
        unmatched_new=tuple(only_new),
        alerts=tuple(sorted(alerts, key=lambda a: SEVERITY_ORDER.index(a.severity))),
        new_alerts=appeared,
        resolved_alerts=gone,
        overlays=tuple(overlays),
    )


def gate_failures(diff: DiffModel, level: Severity) -> list[str]:
    """Return what fails a `--fail-on level` gate: alerts of that severity or worse, new in the new release."""
    worst = SEVERITY_ORDER.index(level)
    out = [
        f"{a.severity} {a.code} {a.model} {a.layer}{'/' + a.param if a.param else ''}"
        for a in diff.alerts
        if SEVERITY_ORDER.index(a.severity) <= worst
    ]
    out += [
        f"new {a.severity} alert {a.code} {a.model} {a.layer}{'/' + a.param if a.param else ''}"
        for a in diff.new_alerts
        if SEVERITY_ORDER.index(a.severity) <= worst
    ]
    return out
