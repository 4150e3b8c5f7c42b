"""Decide what each page shows: the answer, the story, ranked findings, cards, rows, captions, figure ids."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from reportgen.analysis import TensorAnalysis
from reportgen.diagnosis import WEIGHT_ROLES, Alert, Verdict
from reportgen.formatting import num, pvalue, ratio
from reportgen.layer_kinds import TREND_FAMILIES, is_conv
from reportgen.ranking import RankedFinding, comparison_change, meant_untrained, rank_findings, top_findings
from reportgen.report_model import Comparison, FileHash, ModelView, ReportModel, slugify, trend_kernels
from reportgen.sources.base import LayerInfo
from reportgen.thresholds import DISPLAY
from reportgen.vocab import SEVERITIES, STATUS_WORDS, Status


@dataclass(frozen=True)
class FigureSpec:
    """One figure the report shows: its id (the only place ids are made) and what to draw."""

    id: str
    kind: str  # histogram | spectrum | diagnosis | trend | ratio_depth | overlay | headline
    model: int = -1  # index into report.models
    layer: str = ""
    param: str = ""
    label: str = ""  # words for the title, e.g. "first convolutional" or "convolutional"
    index: int = -1  # index into report.comparisons


@dataclass(frozen=True)
class Answer:
    """One model's result in a sentence, with the alert count and the worst severity."""

    model: str
    href: str
    sentence: str
    state: str  # ok | expected | warn | problem | unknown: the colour of the chip
    chip: str  # the chip's words, e.g. "untrained, as intended"
    alerts: tuple[tuple[str, int], ...]  # (severity, count), most severe first, non-zero only
    worst: str | None


@dataclass(frozen=True)
class VerdictRow:
    """One layer's verdict as a reader sees it: a badge and the evidence in words."""

    index: int
    layer: str
    class_name: str
    status: Status
    label: str
    badge: str  # css class
    evidence: str
    notes: tuple[str, ...]
    href: str
    in_card: bool = False  # href leads to a tensor view shown in every layout, not only to the appendix


@dataclass(frozen=True)
class VerdictSummary:
    """The verdicts of one model: the common case in one line, the exceptions listed, every row kept."""

    line: str
    exceptions: tuple[VerdictRow, ...]
    rows: tuple[VerdictRow, ...]


@dataclass(frozen=True)
class TensorCard:
    """One tensor's view: its figure (or a sentence where a figure says nothing) and its numbers."""

    anchor: str
    title: str
    layer: LayerInfo
    analysis: TensorAnalysis
    figure: str | None
    sentence: str | None
    key_numbers: str
    init_line: str | None
    verdict: VerdictRow | None
    spectrum: str | None
    spectrum_note: str


@dataclass(frozen=True)
class LayerCard:
    """One layer's tensors side by side under its name and verdict badge."""

    title: str
    layer: LayerInfo
    verdict: VerdictRow | None
    tensors: tuple[TensorCard, ...]


@dataclass(frozen=True)
class AlertGroup:
    """Alerts of one code, severity and model, in one row: the layers listed, each linked to its view."""

    severity: str
    model: str
    code: str
    message: str
    layers: tuple[tuple[str, str], ...]  # (layer name, href)
    numbers: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ComparisonView:
    """The same layer in several models: the overlay figure and its table rows."""

    title: str
    figure: str
    caption: str
    rows: tuple[tuple[str, TensorAnalysis], ...]


@dataclass(frozen=True)
class LimitRow:
    """One kernel shared by the compared models: its initial limit and where each model's weights are."""

    layer: str
    fan_in: int
    fan_out: int
    limit: float
    cells: tuple[tuple[float, float] | None, ...]  # per model: (max |w| / limit, std / init std)


@dataclass(frozen=True)
class ModelPage:
    """Everything one model's section shows."""

    view: ModelView
    answer: Answer
    line: str
    verdicts: VerdictSummary
    diagnosis_figure: str
    cards: tuple[LayerCard, ...]
    alerted: tuple[LayerCard, ...]
    init_rows: tuple[tuple[LayerInfo, TensorAnalysis, VerdictRow | None], ...]
    constants_line: str | None

    def verdict_row(self, layer: str) -> VerdictRow | None:
        """Return a layer's verdict row, or None for a layer without one."""
        return next((r for r in self.verdicts.rows if r.layer == layer), None)


@dataclass(frozen=True)
class Presentation:
    """The report as pages: built once from the ReportModel, laid out by the templates."""

    report: ReportModel
    pdf_full: bool
    answers: tuple[Answer, ...]
    top_findings: tuple[RankedFinding, ...]
    findings: tuple[RankedFinding, ...]
    headline: str | None
    headline_caption: str
    comparisons: tuple[ComparisonView, ...]
    limit_models: tuple[str, ...]
    limit_init: str
    limits: tuple[LimitRow, ...]
    trends: tuple[tuple[str, str], ...]  # (figure id, caption)
    alert_groups: tuple[AlertGroup, ...]
    alert_counts: tuple[tuple[str, int], ...]
    models: tuple[ModelPage, ...]
    files: tuple[FileHash, ...]
    figure_specs: tuple[FigureSpec, ...]


def tensor_anchor(m: ModelView, layer: str, param: str) -> str:
    """Return the HTML id of one tensor's view."""
    return f"t-{m.slug}-{slugify(layer)}-{slugify(param)}"


def _counts(alerts: list[Alert] | tuple[Alert, ...]) -> tuple[tuple[str, int], ...]:
    c = Counter(a.severity for a in alerts)
    return tuple((s, c[s]) for s in SEVERITIES if c[s])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def answer(m: ModelView, alerts: tuple[Alert, ...]) -> Answer:
    """Say in one sentence whether a model is trained and whether anything is wrong."""
    d = m.diagnosis
    known = d.at_init + d.moved
    mine = [a for a in alerts if a.model == m.name]
    counts = _counts(mine)
    worst = counts[0][0] if counts else None
    if d.looks_trained is None:
        state, chip = "unknown", "cannot tell"
        text = f"{m.name}: trained or not cannot be told, no layer has a known initializer"
    elif d.looks_trained:
        state, chip = "ok", "trained"
        text = (
            f"{m.name} is trained: {d.moved} of {known} layers with a known initializer moved from their initial draw"
        )
        if meant_untrained(m):
            state, chip = "problem", "trained, but meant untrained"
    else:
        state, chip = "expected", "untrained"
        text = f"{m.name} is untrained: {d.at_init} of {known} layers with a known initializer match a fresh draw"
        if meant_untrained(m):
            chip, text = "untrained, as intended", text + ", as its random initialisation intends"
        elif m.source.trained:
            state, chip = "problem", "untrained, but meant trained"
    if not counts:
        text += ". No alerts."
    else:
        parts = ", ".join(f"{n} {s}" for s, n in counts)
        text += f". {_plural(len(mine), 'alert')} ({parts}); the worst is {worst}."
        if worst == "critical":
            state = "problem"
        elif worst == "warning" and state != "problem":
            state = "warn"
    return Answer(m.name, f"#{m.slug}", text, state, chip, counts, worst)


def evidence(m: ModelView, v: Verdict) -> str:
    """Write a verdict's evidence for people: a fresh draw's tests, or how far the layer moved."""
    c = v.evidence
    a = m.analysis(v.layer, v.param) if v.param else None
    if c is None or c.family == "constant" or a is None or a.init is None:
        return v.reason
    kind = a.init.spec.kind
    parts = [f"KS distance {num(c.ks_stat, 2)}, {pvalue(c.ks_pvalue)}", f"std {ratio(c.std_ratio)} its initial std"]
    if c.bounded and c.bound:
        outside = 1.0 - c.inside_share
        where = "all values" if outside <= 0 else f"{outside:.2%} of values beyond"
        parts.append(f"{where} {'inside ' if outside <= 0 else ''}±{num(c.bound)}")
    if v.status == "at_init":
        return f"{v.param} matches a fresh {kind} draw: " + "; ".join(parts)
    return f"{v.param} moved from its {kind} draw: " + "; ".join(parts)


def _badge(status: Status, expected: bool) -> tuple[str, str]:
    if status == "at_init" and expected:
        return "v-expected", f"{STATUS_WORDS['at_init'].label} (expected)"
    return f"v-{status}", STATUS_WORDS[status].label


def verdict_summary(m: ModelView, cards: frozenset[str] = frozenset()) -> VerdictSummary:
    """Summarise a model's verdicts: the common status in one line, every other layer listed."""
    expected = meant_untrained(m)
    rows = []
    for i, v in enumerate(m.diagnosis.verdicts):
        badge, label = _badge(v.status, expected)
        card = tensor_anchor(m, v.layer, v.param) if v.param else ""
        href = f"#{card}" if card in cards else f"#{m.layer_anchor(v.layer)}"
        row = VerdictRow(i, v.layer, v.class_name, v.status, label, badge, evidence(m, v), v.notes, href, card in cards)
        rows.append(row)
    if not rows:
        return VerdictSummary("No layer holds weights.", (), ())
    common, n = Counter(r.status for r in rows).most_common(1)[0]
    line = f"{_plural(n, 'layer')} {STATUS_WORDS[common].run}"
    if common == "at_init" and expected:
        line += ", as intended"
    others = tuple(r for r in rows if r.status != common)
    if others:
        rest = Counter(r.status for r in others)
        line += "; " + "; ".join(f"{k} {STATUS_WORDS[s].run}" for s, k in rest.most_common())
        line += " (listed below)."
    else:
        line += "; no exceptions."
    return VerdictSummary(line[0].upper() + line[1:], others, tuple(rows))


def _init_line(a: TensorAnalysis) -> str | None:
    if a.init is None:
        return None
    fans = f", fan_in {a.init.fan_in:,}, fan_out {a.init.fan_out:,}" if a.init.fan_in else ""
    return f"Initialised as {a.init.spec.kind}: {a.init.describe()}{fans}."


def _key_numbers(a: TensorAnalysis) -> str:
    s, c = a.stats, a.init_check
    parts = [f"std {num(s.std)}", f"max |w| {num(s.max_abs)}", f"kurtosis {num(s.kurtosis, 3)}"]
    if c is not None and math.isfinite(c.std_ratio):
        parts.insert(1, f"{ratio(c.std_ratio)} init std")
    if c is not None and math.isfinite(c.ks_pvalue):
        parts.append(f"KS {pvalue(c.ks_pvalue)}")
    if s.nan or s.inf:
        parts.append(f"{s.nan:,} NaN, {s.inf:,} Inf")
    return " · ".join(parts)


def _constant_sentence(a: TensorAnalysis) -> str | None:
    """Return a sentence for a tensor that a histogram would show as one bar (or nothing)."""
    s = a.stats
    if s.count == 0:
        return f"The {a.param} is empty."
    if s.finite == 0:
        return f"All {s.count:,} values of the {a.param} are NaN or Inf."
    if s.min == s.max:
        return f"All {s.count:,} values of the {a.param} are exactly {num(s.min)}."
    return None


def _spectrum_note(layer: LayerInfo, a: TensorAnalysis, verdict: Verdict | None) -> str:
    sp = a.spectral
    if sp is None:
        return ""
    if is_conv(layer.class_name) or len(a.stats.shape) > 2:
        note = (
            f"The kernel is cut into its {sp.n_matrices} spatial slices (in × out each); their eigenvalues are pooled."
        )
    else:
        note = "Eigenvalues of WᵀW for the (in × out) weight matrix."
    if verdict is not None and verdict.status == "at_init":
        note += " At its initial draw the spectrum is the random-matrix bulk, so alpha says nothing about training."
    return note


def _card(
    m: ModelView, layer: LayerInfo, a: TensorAnalysis, label: str, mi: int, specs: list[FigureSpec]
) -> TensorCard:
    """Build one tensor's view and register its figures."""
    anchor = tensor_anchor(m, layer.name, a.param)
    sentence = _constant_sentence(a)
    fig = None
    if sentence is None and a.stats.histogram is not None:
        fig = f"hist-{anchor}"
        specs.append(FigureSpec(fig, "histogram", mi, layer.name, a.param, label))
    v = m.verdict(layer.name)
    vrow = None
    if v is not None and v.param == a.param:
        badge, vlabel = _badge(v.status, meant_untrained(m))
        vrow = VerdictRow(
            0, v.layer, v.class_name, v.status, vlabel, badge, evidence(m, v), v.notes, f"#{anchor}", True
        )
    spec_id = None
    sp = a.spectral
    if (
        a.role in WEIGHT_ROLES
        and sp is not None
        and sp.evals is not None
        and len(sp.evals) >= DISPLAY.spectrum_min_evals
    ):
        spec_id = f"spec-{anchor}"
        specs.append(FigureSpec(spec_id, "spectrum", mi, layer.name, a.param, label))
    title = a.param
    return TensorCard(
        anchor,
        title,
        layer,
        a,
        fig,
        sentence,
        _key_numbers(a),
        _init_line(a),
        vrow,
        spec_id,
        _spectrum_note(layer, a, v),
    )


def _layer_card(m: ModelView, layer: LayerInfo, label: str, tensors: tuple[TensorCard, ...]) -> LayerCard:
    v = m.verdict(layer.name)
    row = None
    if v is not None:
        badge, vlabel = _badge(v.status, meant_untrained(m))
        row = VerdictRow(0, v.layer, v.class_name, v.status, vlabel, badge, "", v.notes, "", True)
    title = f"{label} · {layer.name}" if label != layer.name else layer.name
    return LayerCard(title, layer, row, tensors)


def _alert_param(m: ModelView, a: Alert) -> str | None:
    if a.param and m.analysis(a.layer, a.param) is not None:
        return a.param
    layer = next((x for x in m.layers if x.name == a.layer), None)
    if layer is None:
        return None
    return next((p.name for p in layer.params if m.analysis(layer.name, p.name) is not None), None)


def _model_page(m: ModelView, mi: int, alerts: tuple[Alert, ...], specs: list[FigureSpec]) -> ModelPage:
    """Lay out one model: its answer, verdict summary, selected and alerted tensors, bulk rows."""
    cards: list[LayerCard] = []
    shown: set[tuple[str, str]] = set()
    for view in m.selected:
        layer, label = view.selected.layer, view.selected.label
        tensors = tuple(_card(m, layer, a, label, mi, specs) for a in view.analyses)
        cards.append(_layer_card(m, layer, label, tensors))
        shown.update((a.layer, a.param) for a in view.analyses)
    extra: dict[str, list[TensorCard]] = {}
    by_name = {layer.name: layer for layer in m.layers}
    for al in alerts:
        param = _alert_param(m, al) if al.model == m.name else None
        if param is None or (al.layer, param) in shown or al.layer not in by_name:
            continue
        shown.add((al.layer, param))
        found = m.analysis(al.layer, param)
        if found is not None:
            extra.setdefault(al.layer, []).append(_card(m, by_name[al.layer], found, al.layer, mi, specs))
    alerted = [_layer_card(m, by_name[name], name, tuple(ts)) for name, ts in extra.items()]
    diag = f"diag-{m.slug}"
    specs.append(FigureSpec(diag, "diagnosis", mi))
    summary = verdict_summary(m, frozenset(t.anchor for c in (*cards, *alerted) for t in c.tensors))
    vrows = {r.layer: r for r in summary.rows}
    init_rows, consts = [], []
    for layer in m.weighted_layers:
        for p in layer.params:
            t = m.analysis(layer.name, p.name)
            if t is None or t.init is None:
                continue
            if t.init.family == "constant":
                consts.append(t)
            else:
                init_rows.append((layer, t, vrows.get(layer.name) if t.role in WEIGHT_ROLES else None))
    const_line = None
    if consts:
        exact = sum(1 for a in consts if a.init_check is not None and a.init_check.const_share == 1.0)
        const_line = (
            f"{len(consts)} tensors started from a constant (zeros or ones: biases, normalisation scales and "
            f"shifts, running statistics); {exact} of them still hold exactly that constant."
        )
    fmt = f" · format {m.source.format}" if m.source.format else ""
    line = (
        f"{m.source.description} · {m.param_count:,} parameters in {len(m.weighted_layers)} layers with weights "
        f"({len(m.layers)} layers in all){fmt}."
    )
    return ModelPage(
        m, answer(m, alerts), line, summary, diag, tuple(cards), tuple(alerted), tuple(init_rows), const_line
    )


def group_alerts(report: ReportModel, pages: dict[str, ModelPage]) -> tuple[AlertGroup, ...]:
    """Group alerts by severity, model and code; each layer links to its tensor view."""
    groups: dict[tuple[str, str, str], list[Alert]] = {}
    for a in report.alerts:
        groups.setdefault((a.severity, a.model, a.code), []).append(a)
    out = []
    for (sev, model, code), items in groups.items():
        page = pages[model]
        known = {(t.layer.name, t.analysis.param): t.anchor for c in (*page.cards, *page.alerted) for t in c.tensors}
        layers = tuple((a.layer, f"#{_alert_target(page, known, a)}") for a in items)
        if len(items) == 1:
            message, numbers = items[0].message, items[0].numbers
        else:
            message, numbers = _group_message(items), ()
        out.append(AlertGroup(sev, model, code, message, layers, numbers))
    out.sort(key=lambda g: SEVERITIES.index(g.severity))
    return tuple(out)


def _alert_target(page: ModelPage, known: dict[tuple[str, str], str], a: Alert) -> str:
    """Return the id of the view an alert links to: its tensor's card, else the layer's appendix row."""
    param = _alert_param(page.view, a)
    return known.get((a.layer, param or ""), page.view.layer_anchor(a.layer))


def _group_message(items: list[Alert]) -> str:
    """Say what a group of same-code alerts shares, with the range of its first number."""
    first = items[0]
    head = f"{len(items)} tensors, e.g. {first.layer}: {first.message}"
    if first.numbers:
        key = first.numbers[0][0]
        vals = [dict(a.numbers).get(key, float("nan")) for a in items]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            head += f"; {key.replace('_', ' ')} {num(min(vals), 3)} to {num(max(vals), 3)} across the {len(items)}"
    return head


def _story(report: ReportModel, specs: list[FigureSpec]) -> tuple[list[ComparisonView], int | None]:
    """Return the untrained-vs-trained overlays and the index of the comparison that shows the most."""
    views, best, best_change = [], None, -1.0
    for ci, c in enumerate(report.comparisons):
        if c.param not in ("kernel", "weight"):
            continue
        fid = f"overlay-{slugify(c.layer)}-{slugify(c.param)}"
        specs.append(FigureSpec(fid, "overlay", index=ci))
        views.append(ComparisonView(f"{c.layer} · {c.param}", fid, _overlay_caption(c), c.entries))
        change = comparison_change(report, c.layer)
        if change > best_change:
            best, best_change = ci, change
    return views, best


def _overlay_caption(c: Comparison) -> str:
    parts = [f"{n}: std {num(a.stats.std)}, excess kurtosis {num(a.stats.kurtosis, 3)}" for n, a in c.entries]
    return (
        "Densities on one axis; dashed: the initial distribution; dotted: a normal with the trained weights' mean "
        "and std. Excess kurtosis is −1.2 for a uniform draw and 0 for a normal. " + "; ".join(parts) + "."
    )


def limit_table(report: ReportModel) -> tuple[tuple[str, ...], str, tuple[LimitRow, ...]]:
    """Tabulate the uniform initial limit of every kernel the compared models share, and where each model is."""
    names = []
    for c in report.comparisons:
        names += [n for n, _ in c.entries if n not in names]
    models = [report.model(n) for n in names]
    if len(models) < 2:
        return (), "", ()
    rows, kinds = [], set()
    for layer in models[0].weighted_layers:
        kernel = layer.param("kernel")
        if kernel is None:
            continue
        cells: list[tuple[float, float] | None] = []
        ref = None
        for m in models:
            a = m.analysis(layer.name, kernel.name)
            ok = a is not None and a.init is not None and a.init.family == "uniform" and a.init.limit
            if not ok or a is None or a.init is None:
                cells.append(None)
                continue
            ref = ref or a
            kinds.add(a.init.spec.kind)
            check = a.init_check
            cells.append((a.stats.max_abs / (a.init.limit or 1.0), check.std_ratio if check else float("nan")))
        if ref is not None and ref.init is not None and sum(x is not None for x in cells) >= 2:
            i = ref.init
            rows.append(LimitRow(layer.name, i.fan_in or 0, i.fan_out or 0, i.limit or 0.0, tuple(cells)))
    return tuple(names), "/".join(sorted(kinds)), tuple(rows)


def present(report: ReportModel, *, pdf_full: bool = False) -> Presentation:
    """Turn the ReportModel into pages: what each section shows and every figure it needs."""
    specs: list[FigureSpec] = []
    pages = [_model_page(m, i, report.alerts, specs) for i, m in enumerate(report.models)]
    comparisons, best = _story(report, specs)
    headline, caption = None, ""
    has_ratio = any(
        a.init_check is not None and a.init is not None and a.init.family != "constant"
        for m in report.models
        for a in m.analyses.values()
    )
    if best is not None:
        headline = "headline"
        specs.append(FigureSpec(headline, "headline", index=best))
        c = report.comparisons[best]
        caption = (
            f"Left: {c.layer} {c.param} of each model, with the initial distribution (dashed) and a normal fitted "
            "to the trained weights (dotted). Right: each kernel's std over the std it was initialised with, by "
            "depth; a fresh draw sits at 1 (shaded band)."
        )
    elif has_ratio:
        headline = "ratio-depth"
        specs.append(FigureSpec(headline, "ratio_depth"))
        caption = "Each kernel's std over the std it was initialised with, by depth; a fresh draw sits at 1."
    trends = []
    for label in TREND_FAMILIES:
        fid = "trend-" + label.replace(" ", "-")
        if any(trend_kernels(m, label) for m in report.models):
            specs.append(FigureSpec(fid, "trend", label=label))
            trends.append((fid, f"Mean |w| of every {label} kernel, input side first, one line per model."))
    names, kind, limits = limit_table(report)
    ranked = rank_findings(report)
    by_name = {p.view.name: p for p in pages}
    return Presentation(
        report=report,
        pdf_full=pdf_full,
        answers=tuple(p.answer for p in pages),
        top_findings=top_findings(ranked),
        findings=ranked,
        headline=headline,
        headline_caption=caption,
        comparisons=tuple(comparisons),
        limit_models=names,
        limit_init=kind,
        limits=limits,
        trends=tuple(trends),
        alert_groups=group_alerts(report, by_name),
        alert_counts=_counts(report.alerts),
        models=tuple(pages),
        files=tuple(report.input_files()),
        figure_specs=tuple(dict.fromkeys(specs)),
    )
