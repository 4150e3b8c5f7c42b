"""Follow each model across releases: per layer scale, mean |w|, verdict and alerts, and what moved when."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reportgen.diff import SEVERITY_ORDER, VERDICT_REGRESSIONS, match_models
from reportgen.stats_json import AlertDoc, LayerDoc, LoadedStats, ModelDoc, ParamDoc, Severity, Status
from reportgen.thresholds import RELEASES

HISTORY_SCHEMA_VERSION = "1.0"
# Roles whose std is compared with the initializer's; the first one a layer has is followed.
FOLLOWED_ROLES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embedding", "recurrent_kernel")
# Moves listed by name per step between two releases; the rest are counted (all of them are in history.json).
MOVES_NAMED = 5


@dataclass(frozen=True)
class Release:
    """One report in the history, in release order."""

    index: int
    name: str  # unique: the report folder, with #n appended when two share a name
    path: str
    title: str | None
    generated_at: str | None
    tool_version: str
    schema_version: str  # as read


@dataclass(frozen=True)
class LayerAlert:
    """An alert a release raised on a layer."""

    severity: Severity
    code: str
    param: str | None
    message: str


@dataclass(frozen=True)
class LayerSeries:
    """One layer over the releases; every tuple has one entry per release (None where it is absent)."""

    layer: str
    class_name: str
    param: str | None  # the tensor followed: its kernel, else its first analysed tensor
    present: tuple[bool, ...]
    std_init: tuple[float | None, ...]  # std / the initializer's std (the post's "std relative to init")
    mean_abs: tuple[float | None, ...]
    verdicts: tuple[Status | None, ...]
    alerts: tuple[tuple[LayerAlert, ...], ...]
    nonfinite: tuple[int, ...]

    @property
    def worst(self) -> tuple[Severity | None, ...]:
        """Return each release's most severe alert on this layer."""
        return tuple(min((a.severity for a in al), key=SEVERITY_ORDER.index, default=None) for al in self.alerts)


@dataclass(frozen=True)
class Move:
    """A layer that moved between two consecutive releases."""

    layer: str
    to_release: int  # the step from to_release - 1 to to_release
    size: float  # the larger relative change of std and mean |w|; inf for a verdict change or NaN appearing
    what: str


@dataclass(frozen=True)
class Problem:
    """Something wrong in a layer, with the release where it first appeared and whether it lasts."""

    layer: str
    param: str | None
    severity: Severity
    code: str
    message: str
    first: int  # release index
    last: int  # last release index showing it
    persists: bool  # still present in the latest release


@dataclass(frozen=True)
class ModelHistory:
    """One model followed over every release."""

    name: str  # the name in the latest release holding it
    names: tuple[str | None, ...]  # per release (renames show here; None where it is absent)
    layers: tuple[LayerSeries, ...]
    moves: tuple[Move, ...]
    problems: tuple[Problem, ...]
    first_wrong: int | None  # first release after the first that introduced a warning/critical alert or regression

    def moves_at(self, release: int) -> tuple[Move, ...]:
        """Return the moves into a release, biggest first."""
        return tuple(sorted((m for m in self.moves if m.to_release == release), key=lambda m: (-m.size, m.layer)))

    @property
    def still_count(self) -> int:
        """Return how many layers never moved between releases."""
        moved = {m.layer for m in self.moves}
        return sum(s.layer not in moved for s in self.layers)


@dataclass(frozen=True)
class HistoryModel:
    """Every release and every model's history, ready for the renderers."""

    releases: tuple[Release, ...]
    models: tuple[ModelHistory, ...]


def _followed(layer: LayerDoc) -> ParamDoc | None:
    analysed = [p for p in layer.params if p.stats is not None]
    for role in FOLLOWED_ROLES:
        for p in analysed:
            if p.role == role:
                return p
    return analysed[0] if analysed else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _rel(new: float | None, old: float | None) -> float:
    """Return |new - old| / |old|; 0 when either is unknown or both are 0."""
    if new is None or old is None or (new == old):
        return 0.0
    return math.inf if old == 0 else abs(new - old) / abs(old)


def _chains(docs: Sequence[LoadedStats]) -> list[list[ModelDoc | None]]:
    """Follow each model through the releases by name, or by shared tensors when it was renamed."""
    chains: list[list[ModelDoc | None]] = []
    open_chains: dict[str, int] = {}  # name in the previous release -> chain
    for r, loaded in enumerate(docs):
        prev = [c[r - 1] for c in chains if r > 0 and c[r - 1] is not None]
        pairs, _, _ = match_models(tuple(m for m in prev if m is not None), loaded.doc.models)
        paired = {n.name: open_chains[o.name] for o, n in pairs}
        for chain in chains:
            chain.append(None)
        now: dict[str, int] = {}
        for m in loaded.doc.models:
            if m.name in paired:
                idx = paired[m.name]
            else:
                idx = len(chains)
                chains.append([None] * (r + 1))
            chains[idx][r] = m
            now[m.name] = idx
        open_chains = now
    return chains


def _series(name: str, per_release: list[tuple[LayerDoc | None, tuple[AlertDoc, ...]]]) -> LayerSeries:
    """Build one layer's series from its entry in each release."""
    first = next(layer for layer, _ in per_release if layer is not None)
    param_name = next((p.name for layer, _ in per_release if layer and (p := _followed(layer))), None)
    std_init, mean_abs, verdicts, nonfinite = [], [], [], []
    for layer, _ in per_release:
        p = next((q for q in layer.params if q.name == param_name), None) if layer else None
        s = p.stats if p else None
        std_init.append(_ratio(s.std, p.init.std) if s and p and p.init else None)
        mean_abs.append(s.mean_abs if s else None)
        verdicts.append(layer.status if layer else None)
        nonfinite.append(sum(q.stats.nonfinite for q in layer.params if q.stats) if layer else 0)
    return LayerSeries(
        layer=name,
        class_name=first.class_name,
        param=param_name,
        present=tuple(layer is not None for layer, _ in per_release),
        std_init=tuple(std_init),
        mean_abs=tuple(mean_abs),
        verdicts=tuple(verdicts),
        alerts=tuple(tuple(LayerAlert(a.severity, a.code, a.param, a.message) for a in al) for _, al in per_release),
        nonfinite=tuple(nonfinite),
    )


def _moves(s: LayerSeries) -> list[Move]:
    """Return the steps where a layer's scale, mean |w|, verdict or finiteness changed."""
    out = []
    for r in range(1, len(s.present)):
        if not (s.present[r] and s.present[r - 1]):
            continue
        vo, vn = s.verdicts[r - 1], s.verdicts[r]
        if vo and vn and vo != vn:
            tag = " (regression)" if (vo, vn) in VERDICT_REGRESSIONS else ""
            out.append(Move(s.layer, r, math.inf, f"verdict {vo} → {vn}{tag}"))
        elif s.nonfinite[r] > s.nonfinite[r - 1]:
            out.append(Move(s.layer, r, math.inf, f"{s.nonfinite[r] - s.nonfinite[r - 1]} NaN/Inf appeared"))
        else:
            d_std = _rel(s.std_init[r], s.std_init[r - 1])
            d_abs = _rel(s.mean_abs[r], s.mean_abs[r - 1])
            if max(d_std, d_abs) > RELEASES.history_move:
                out.append(Move(s.layer, r, max(d_std, d_abs), f"std/init {d_std:+.1%}, mean |w| {d_abs:+.1%}"))
    return out


def _problems(series: Sequence[LayerSeries]) -> list[Problem]:
    """Return each alert and regression with the release it first appeared in."""
    seen: dict[tuple[str, str, str | None], Problem] = {}
    n = len(series[0].present) if series else 0
    for s in series:
        for r, al in enumerate(s.alerts):
            for a in al:
                if a.severity == "info":  # facts about a layer, not something gone wrong
                    continue
                key = (s.layer, a.code, a.param)
                p = seen.get(key)
                first = r if p is None else p.first
                seen[key] = Problem(s.layer, a.param, a.severity, a.code, a.message, first, r, r == n - 1)
        for r in range(1, n):
            if (s.verdicts[r - 1], s.verdicts[r]) in VERDICT_REGRESSIONS:
                last = r
                while last + 1 < n and s.verdicts[last + 1] == s.verdicts[r]:
                    last += 1  # the regression lasts while the layer keeps its new verdict
                key = (s.layer, "verdict_regression", None)
                msg = f"verdict went from {s.verdicts[r - 1]} to {s.verdicts[r]}"
                problem = Problem(s.layer, None, "critical", "verdict_regression", msg, r, last, last == n - 1)
                seen.setdefault(key, problem)
    return sorted(seen.values(), key=lambda p: (p.first, SEVERITY_ORDER.index(p.severity), p.layer))


def _first_wrong(problems: Sequence[Problem]) -> int | None:
    bad = [p.first for p in problems if p.first > 0 and p.severity in ("critical", "warning")]
    return min(bad) if bad else None


def model_history(chain: list[ModelDoc | None], docs: Sequence[LoadedStats]) -> ModelHistory:
    """Follow one model's layers through its releases."""
    order: list[str] = []
    for m in chain:
        # Layers without tensors (pooling, activations) have nothing to follow.
        for layer in m.layers if m else ():
            if layer.params and layer.name not in order:
                order.append(layer.name)
    lookup = [{layer.name: layer for layer in m.layers} if m else {} for m in chain]
    alerts = [
        [a for a in d.doc.alerts if m is not None and a.model == m.name] for d, m in zip(docs, chain, strict=True)
    ]
    series = []
    for name in order:
        per = [(lookup[r].get(name), tuple(a for a in alerts[r] if a.layer == name)) for r in range(len(chain))]
        series.append(_series(name, per))
    problems = _problems(series)
    return ModelHistory(
        name=next(m.name for m in reversed(chain) if m is not None),
        names=tuple(m.name if m else None for m in chain),
        layers=tuple(series),
        moves=tuple(mv for s in series for mv in _moves(s)),
        problems=tuple(problems),
        first_wrong=_first_wrong(problems),
    )


def _releases(docs: Sequence[LoadedStats], paths: Sequence[str]) -> tuple[Release, ...]:
    out, used = [], set()
    for i, (d, path) in enumerate(zip(docs, paths, strict=True)):
        name = d.release
        if name in used:
            name = f"{name} #{i + 1}"
        used.add(name)
        out.append(Release(i, name, path, d.doc.title, d.doc.generated_at, d.doc.tool.version, d.read_version))
    return tuple(out)


def compute_history(docs: Sequence[LoadedStats], paths: Sequence[str]) -> HistoryModel:
    """Follow every model through the releases, given in release order."""
    return HistoryModel(_releases(docs, paths), tuple(model_history(c, docs) for c in _chains(docs)))
