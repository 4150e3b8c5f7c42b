"""Rank findings for a reader: a finding's own importance when it has one, else its kind, news value and alerts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reportgen.report_model import Finding, ModelView, ReportModel
from reportgen.vocab import SEVERITIES

# How much a finding of each kind tells a reader when it carries no importance of its own: a direct
# untrained-vs-trained comparison and a bound that trained weights left are the evidence of training;
# depth trends describe it; a zero bias explained by BatchNormalization is a detail.
KIND_WEIGHT = {"comparison": 3.0, "init": 2.5, "trend": 2.0, "bias": 1.5, "observation": 1.0}
# A finding about a model meant to be untrained restates the expected result: it ranks below news.
EXPECTED_PENALTY = 1.0
# A finding about a layer that also raised an alert ranks by the alert's severity first.
SEVERITY_BONUS = {"critical": 3.0, "warning": 1.5, "info": 0.0}
TOP_FINDINGS = 3


@dataclass(frozen=True)
class RankedFinding:
    """A finding with the score that placed it and a link to the layer it is about."""

    text: str
    model: str | None
    kind: str
    score: float
    href: str | None


def meant_untrained(m: ModelView) -> bool:
    """Whether the config asked for this model's random initialisation (so 'at init' is the expected result)."""
    return m.source.trained is False


def own_importance(f: Finding) -> float | None:
    """Return the importance the diagnosis gave a finding, or None where it gives none."""
    own = getattr(f, "importance", None)
    return float(own) if isinstance(own, int | float) and math.isfinite(own) else None


def rule_score(f: Finding, report: ReportModel, alert_sev: dict[tuple[str, str], str]) -> float:
    """Score a finding by its kind, its news value and its layer's alerts."""
    score = KIND_WEIGHT.get(f.kind, 1.0)
    models = [m for m in report.models if m.name == f.model]
    if models and meant_untrained(models[0]):
        score -= EXPECTED_PENALTY
    if f.kind == "comparison":
        change = comparison_change(report, f.layer)
        score += change / (1.0 + change)  # in [0, 1): the bigger the change, the higher
    if f.model and f.layer:
        score += SEVERITY_BONUS.get(alert_sev.get((f.model, f.layer), "info"), 0.0)
    return score


def comparison_change(report: ReportModel, layer: str | None) -> float:
    """Return how far apart a compared layer's models are: |log std ratio| plus the kurtosis gap / 4."""
    best = 0.0
    for c in report.comparisons:
        if c.layer != layer:
            continue
        stds = [a.stats.std for _, a in c.entries if a.stats.std > 0]
        kurt = [a.stats.kurtosis for _, a in c.entries if math.isfinite(a.stats.kurtosis)]
        spread = abs(math.log(max(stds) / min(stds))) if len(stds) > 1 else 0.0
        gap = (max(kurt) - min(kurt)) / 4.0 if len(kurt) > 1 else 0.0
        best = max(best, spread + gap)
    return best


def rank_findings(report: ReportModel) -> tuple[RankedFinding, ...]:
    """Return the findings most important first, each linked to its model or layer.

    A finding's own importance decides first; the rule orders findings of equal importance (and all of them
    where the diagnosis gives none), then the order they were written in.
    """
    alert_sev: dict[tuple[str, str], str] = {}
    for a in report.alerts:
        key = (a.model, a.layer)
        if key not in alert_sev or SEVERITIES.index(a.severity) < SEVERITIES.index(alert_sev[key]):
            alert_sev[key] = a.severity
    slugs = {m.name: m.slug for m in report.models}
    scored = []
    for i, f in enumerate(report.findings):
        href = f"#{slugs[f.model]}" if f.model in slugs else ("#story" if f.kind == "comparison" else None)
        rule = rule_score(f, report, alert_sev)
        own = own_importance(f)
        scored.append((-(rule if own is None else own), -rule, i, f, href))
    scored.sort(key=lambda r: r[:3])
    return tuple(RankedFinding(f.text, f.model, f.kind, -s, href) for s, _, _, f, href in scored)


def top_findings(ranked: tuple[RankedFinding, ...], k: int = TOP_FINDINGS) -> tuple[RankedFinding, ...]:
    """Pick the k best findings, one per kind first so that the first page tells different things."""
    picked: list[RankedFinding] = []
    kinds: set[str] = set()
    for f in ranked:
        if f.kind not in kinds and len(picked) < k:
            picked.append(f)
            kinds.add(f.kind)
    for f in ranked:
        if len(picked) >= k:
            break
        if f not in picked:
            picked.append(f)
    return tuple(sorted(picked, key=ranked.index))
