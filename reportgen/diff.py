"""Compare two reports: structure, per-tensor statistics, verdicts and, when the files remain, the weights."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import SourceError
from reportgen.stats import Histogram

DIFF_SCHEMA_VERSION = "1.0"
# stats.json versions this reader understands; older ones are upgraded on load.
READABLE_SCHEMA_VERSIONS = ("0.9", "1.0")
CURRENT_STATS_VERSION = "1.0"

# Alert thresholds. A std ratio outside this band means the spread halved or doubled.
STD_RATIO_BAND = (0.5, 2.0)
# ||W_new - W_old|| / ||W_old|| above this: the tensor moved by more than half its own size.
REL_CHANGE_ALERT = 0.5
# Verdict moves that mean a layer lost its training between releases.
VERDICT_REGRESSIONS = frozenset({("moved", "at_init")})
# How many of the most changed tensors get an overlaid histogram.
TOP_N = 6

_HASH_BLOCK = 1 << 20


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
class Overlay:
    """Both sides' histograms of one tensor, for an overlaid figure."""

    model: str
    layer: str
    param: str
    role: str
    old: Histogram
    new: Histogram
    score: float | None


@dataclass(frozen=True)
class DiffAlert:
    """A shift large enough to point out."""

    severity: str  # critical | warning | info
    code: str  # std_shift | large_change | verdict_regression | nonfinite_appeared
    model: str
    layer: str
    param: str | None
    message: str


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

    def top(self, n: int = TOP_N) -> tuple[TensorDiff, ...]:
        """Return the n tensors that changed most, biggest first."""
        ranked = [t for t in self.tensors if t.score is not None]
        ranked.sort(key=lambda t: (t.rel_change is None, -(t.score or 0.0), t.layer, t.param))
        return tuple(ranked[:n])


@dataclass(frozen=True)
class Side:
    """One of the compared reports, as described in the diff."""

    label: str
    title: str | None
    generated_at: str | None
    schema_version: str  # as read, before any upgrade
    model_count: int


@dataclass(frozen=True)
class DiffModel:
    """The whole comparison, ready for the renderers."""

    old: Side
    new: Side
    models: tuple[ModelDiff, ...]
    unmatched_old: tuple[str, ...]
    unmatched_new: tuple[str, ...]
    alerts: tuple[DiffAlert, ...]
    overlays: tuple[Overlay, ...]

    def alert_counts(self) -> dict[str, int]:
        """Return the number of alerts per severity, most severe first."""
        out = {"critical": 0, "warning": 0, "info": 0}
        for a in self.alerts:
            out[a.severity] = out.get(a.severity, 0) + 1
        return out


# ---------------------------------------------------------------- loading


def load_stats(path: Path | str) -> dict[str, Any]:
    """Read a stats.json (or a report folder holding one), upgraded to the current layout.

    The returned document carries "_origin": {"path", "schema_version"} telling where it came
    from and which version it was written in.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    file = path / "stats.json" if path.is_dir() else path
    if not file.is_file():
        raise SourceError(f"{path}: folder holds no stats.json (build the report with the json format)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{file}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{file}: not a stats.json (invalid JSON at line {exc.lineno})") from None
    if not isinstance(doc, dict) or "schema_version" not in doc or not isinstance(doc.get("models"), list):
        raise SourceError(f"{file}: not a stats.json (no schema_version and models)")
    version = str(doc["schema_version"])
    if version not in READABLE_SCHEMA_VERSIONS:
        raise SourceError(
            f"{file}: unsupported schema_version {version!r} (this reportgen reads "
            f"{', '.join(READABLE_SCHEMA_VERSIONS)})"
        )
    if version == "0.9":
        doc = upgrade_v09(doc)
    doc["_origin"] = {"path": str(file), "schema_version": version}
    return doc


def upgrade_v09(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a 0.9 document to 1.0: add p01/p99 to stats and verdict to layers, as null."""
    for m in doc.get("models", []):
        for layer in m.get("layers", []):
            layer.setdefault("verdict", None)
            for p in layer.get("params", []):
                stats = p.get("stats")
                if isinstance(stats, dict):
                    stats.setdefault("p01", None)
                    stats.setdefault("p99", None)
    doc["schema_version"] = CURRENT_STATS_VERSION
    return doc


# ---------------------------------------------------------------- comparing


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None or old == 0 else new / old


def _status(layer: dict[str, Any]) -> str | None:
    v = layer.get("verdict")
    return v.get("status") if isinstance(v, dict) else None


def _nonfinite(stats: dict[str, Any]) -> int:
    return int(stats.get("nan") or 0) + int(stats.get("inf") or 0)


def _histogram(stats: dict[str, Any]) -> Histogram | None:
    h = stats.get("histogram")
    if not isinstance(h, dict) or not h.get("edges") or not h.get("counts"):
        return None
    return Histogram(tuple(float(e) for e in h["edges"]), tuple(int(c) for c in h["counts"]))


def _match_models(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str], list[str]]:
    """Pair models by name; a lone model on each side pairs with the other whatever its name."""
    if len(old) == 1 and len(new) == 1:
        return [(old[0], new[0])], [], []
    by_name = {m["name"]: m for m in old}
    pairs = [(by_name[m["name"]], m) for m in new if m["name"] in by_name]
    paired = {m["name"] for _, m in pairs}
    return (
        pairs,
        [m["name"] for m in old if m["name"] not in paired],
        [m["name"] for m in new if m["name"] not in paired],
    )


def _file_ok(entry: dict[str, Any], base: Path | None) -> Path | None:
    """Return the recorded input file if it still exists with the recorded SHA-256."""
    raw = entry.get("path")
    if not raw:
        return None
    candidates = [Path(raw)]
    if base is not None and not Path(raw).is_absolute():
        candidates.append(base / raw)
    for path in candidates:
        if path.is_file() and entry.get("sha256") == _sha256(path):
            return path
    return None


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _sha256_cached(path: str, _mtime_ns: int, _size: int) -> str:
    # Several models often share one file; mtime and size in the key notice a rewrite.
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _weights_path(model: dict[str, Any], base: Path | None) -> tuple[Path | None, str]:
    """Return the path to reopen a model's weights from, or None and the reason."""
    files = (model.get("source") or {}).get("files") or []
    if not files:
        return None, "no weight files recorded"
    paths = [_file_ok(f, base) for f in files]
    if any(p is None for p in paths):
        missing = next(f.get("path") for f, p in zip(files, paths, strict=True) if p is None)
        return None, f"{missing} is missing or changed since the report was built"
    found = [p for p in paths if p is not None]
    if len(found) == 1:
        return found[0], ""
    parents = {p.parent for p in found}
    # Several files (sharded safetensors, a SavedModel): open the folder that holds them.
    return (parents.pop(), "") if len(parents) == 1 else (None, "weight files lie in several folders")


def _aligned(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield equal-length float64 pieces of two flat streams, whatever their chunking."""
    ia, ib = iter(a), iter(b)
    xa = xb = np.empty(0)
    while True:
        while xa.size == 0 and (na := next(ia, None)) is not None:
            xa = np.asarray(na).reshape(-1)
        while xb.size == 0 and (nb := next(ib, None)) is not None:
            xb = np.asarray(nb).reshape(-1)
        if xa.size == 0 or xb.size == 0:
            if xa.size or xb.size:
                raise ValueError("tensors differ in length")
            return
        n = min(xa.size, xb.size)
        yield xa[:n].astype(np.float64), xb[:n].astype(np.float64)
        xa, xb = xa[n:], xb[n:]


def weight_change(
    old_chunks: Iterable[np.ndarray], new_chunks: Iterable[np.ndarray]
) -> tuple[float | None, float | None, float | None]:
    """Return (relative Frobenius change, absolute change, cosine similarity) of two streams."""
    oo = nn = on = dd = 0.0
    for o, n in _aligned(old_chunks, new_chunks):
        d = n - o
        oo += float(np.dot(o, o))
        nn += float(np.dot(n, n))
        on += float(np.dot(o, n))
        dd += float(np.dot(d, d))
    if not all(math.isfinite(x) for x in (oo, nn, on, dd)):
        return None, None, None
    rel = math.sqrt(dd) / math.sqrt(oo) if oo > 0 else None
    cos = on / math.sqrt(oo * nn) if oo > 0 and nn > 0 else None
    # Rounding can push a cosine of identical tensors a hair past 1.
    return rel, math.sqrt(dd), None if cos is None else max(-1.0, min(1.0, cos))


def _compare_weights(
    old_model: dict[str, Any],
    new_model: dict[str, Any],
    wanted: list[tuple[str, str, tuple[int, ...]]],
    bases: tuple[Path | None, Path | None],
) -> tuple[dict[tuple[str, str], tuple[float | None, float | None, float | None]], str]:
    """Reopen both models' weight files and compare the wanted tensors value by value."""
    from reportgen.sources.detect import open_path

    old_path, why = _weights_path(old_model, bases[0])
    if old_path is None:
        return {}, f"old weights not compared: {why}"
    new_path, why = _weights_path(new_model, bases[1])
    if new_path is None:
        return {}, f"new weights not compared: {why}"
    out: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = {}
    try:
        with open_path(old_path) as so, open_path(new_path) as sn:
            refs_o = {(layer.name, p.name): p for layer in so.layers() for p in layer.params}
            refs_n = {(layer.name, p.name): p for layer in sn.layers() for p in layer.params}
            for layer, param, shape in wanted:
                ro, rn = refs_o.get((layer, param)), refs_n.get((layer, param))
                if ro is None or rn is None or ro.shape != shape or rn.shape != shape:
                    continue
                out[(layer, param)] = weight_change(so.iter_chunks(ro), sn.iter_chunks(rn))
    except SourceError as exc:
        return {}, f"weights not compared: {exc}"
    return out, f"weights compared from {old_path.name} and {new_path.name}"


def _tensor_diff(
    layer: str,
    po: dict[str, Any],
    pn: dict[str, Any],
    change: tuple[float | None, float | None, float | None] | None,
) -> TensorDiff:
    so, sn = po.get("stats") or {}, pn.get("stats") or {}
    mo, mn = _num(so.get("mean")), _num(sn.get("mean"))
    do, dn = _num(so.get("std")), _num(sn.get("std"))
    xo, xn = _num(so.get("max_abs")), _num(sn.get("max_abs"))
    rel, dist, cos = change if change is not None else (None, None, None)
    return TensorDiff(
        layer=layer,
        param=pn["name"],
        role=pn.get("role") or "other",
        shape=tuple(pn.get("shape") or ()),
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
        nonfinite_old=_nonfinite(so),
        nonfinite_new=_nonfinite(sn),
    )


def compare_models(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    weights: bool = True,
    bases: tuple[Path | None, Path | None] = (None, None),
) -> ModelDiff:
    """Compare one pair of models from two stats documents."""
    lo = {layer["name"]: layer for layer in old.get("layers", [])}
    ln = {layer["name"]: layer for layer in new.get("layers", [])}
    added = tuple(n for n in ln if n not in lo)
    removed = tuple(n for n in lo if n not in ln)
    retyped, add_t, rem_t, reshaped, verdicts = [], [], [], [], []
    matched: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name, layer_n in ln.items():
        layer_o = lo.get(name)
        if layer_o is None:
            continue
        if layer_o.get("class_name") != layer_n.get("class_name"):
            retyped.append((name, str(layer_o.get("class_name")), str(layer_n.get("class_name"))))
        vo, vn = _status(layer_o), _status(layer_n)
        if vo and vn and vo != vn:
            verdicts.append(VerdictChange(name, vo, vn, (vo, vn) in VERDICT_REGRESSIONS))
        po = {p["name"]: p for p in layer_o.get("params", [])}
        pn = {p["name"]: p for p in layer_n.get("params", [])}
        for pname, p in pn.items():
            q = po.get(pname)
            if q is None:
                add_t.append(TensorRefDiff(name, pname, None, tuple(p.get("shape") or ())))
            elif list(q.get("shape") or ()) != list(p.get("shape") or ()):
                reshaped.append(TensorRefDiff(name, pname, tuple(q.get("shape") or ()), tuple(p.get("shape") or ())))
            else:
                matched.append((name, q, p))
        rem_t += [TensorRefDiff(name, n, tuple(q.get("shape") or ()), None) for n, q in po.items() if n not in pn]
    changes: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = {}
    note = "weights not compared (statistics only)"
    if weights and matched:
        wanted = [(layer, p["name"], tuple(p.get("shape") or ())) for layer, _, p in matched]
        changes, note = _compare_weights(old, new, wanted, bases)
    tensors = tuple(_tensor_diff(layer, q, p, changes.get((layer, p["name"]))) for layer, q, p in matched)
    return ModelDiff(
        old_name=old["name"],
        new_name=new["name"],
        added_layers=added,
        removed_layers=removed,
        retyped_layers=tuple(retyped),
        added_tensors=tuple(add_t),
        removed_tensors=tuple(rem_t),
        reshaped_tensors=tuple(reshaped),
        tensors=tensors,
        verdict_changes=tuple(verdicts),
        weights_compared=len(changes),
        weights_note=note,
    )


def model_alerts(m: ModelDiff) -> list[DiffAlert]:
    """Return the alerts one model's changes raise."""
    out: list[DiffAlert] = []
    lo, hi = STD_RATIO_BAND
    for v in m.verdict_changes:
        if v.regression:
            out.append(
                DiffAlert(
                    "critical",
                    "verdict_regression",
                    m.new_name,
                    v.layer,
                    None,
                    f"verdict went from {v.old} to {v.new}",
                )
            )
    for t in m.tensors:
        if t.nonfinite_new and not t.nonfinite_old:
            out.append(
                DiffAlert(
                    "critical",
                    "nonfinite_appeared",
                    m.new_name,
                    t.layer,
                    t.param,
                    f"{t.nonfinite_new} NaN/Inf values appeared",
                )
            )
        if t.std_ratio is not None and not lo <= t.std_ratio <= hi:
            out.append(
                DiffAlert(
                    "warning",
                    "std_shift",
                    m.new_name,
                    t.layer,
                    t.param,
                    f"std changed {t.std_ratio:.3g}× (outside [{lo:g}, {hi:g}])",
                )
            )
        if t.rel_change is not None and t.rel_change > REL_CHANGE_ALERT:
            out.append(
                DiffAlert(
                    "warning",
                    "large_change",
                    m.new_name,
                    t.layer,
                    t.param,
                    f"relative change {t.rel_change:.3g} > {REL_CHANGE_ALERT:g}",
                )
            )
    return out


def _side(doc: dict[str, Any], label: str) -> Side:
    origin = doc.get("_origin") or {}
    return Side(
        label,
        doc.get("title"),
        doc.get("generated_at"),
        str(origin.get("schema_version", doc.get("schema_version"))),
        len(doc.get("models", [])),
    )


def _base(doc: dict[str, Any]) -> Path | None:
    origin = doc.get("_origin") or {}
    return Path(origin["path"]).parent if origin.get("path") else None


def compute_diff(
    old: dict[str, Any], new: dict[str, Any], *, old_label: str, new_label: str, weights: bool = True
) -> DiffModel:
    """Compare two stats documents (as load_stats returns them)."""
    pairs, only_old, only_new = _match_models(old.get("models", []), new.get("models", []))
    models = tuple(compare_models(o, n, weights=weights, bases=(_base(old), _base(new))) for o, n in pairs)
    alerts = tuple(a for m in models for a in model_alerts(m))
    overlays = []
    for (o, n), m in zip(pairs, models, strict=True):
        so = {(layer["name"], p["name"]): p.get("stats") or {} for layer in o["layers"] for p in layer["params"]}
        sn = {(layer["name"], p["name"]): p.get("stats") or {} for layer in n["layers"] for p in layer["params"]}
        for t in m.top():
            ho, hn = _histogram(so[(t.layer, t.param)]), _histogram(sn[(t.layer, t.param)])
            if ho is not None and hn is not None:
                overlays.append(Overlay(m.name, t.layer, t.param, t.role, ho, hn, t.score))
    return DiffModel(
        _side(old, old_label),
        _side(new, new_label),
        models,
        tuple(only_old),
        tuple(only_new),
        alerts,
        tuple(overlays),
    )


# ---------------------------------------------------------------- terminal summary


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def summary_lines(diff: DiffModel) -> list[str]:
    """Return the terminal summary: structure counts, top changes, alerts."""
    lines = [
        f"old: {diff.old.label} ({diff.old.title or 'untitled'}, {diff.old.generated_at or '?'})",
        f"new: {diff.new.label} ({diff.new.title or 'untitled'}, {diff.new.generated_at or '?'})",
    ]
    if diff.unmatched_old or diff.unmatched_new:
        lines.append(f"unmatched models: old {list(diff.unmatched_old)}, new {list(diff.unmatched_new)}")
    for m in diff.models:
        lines.append(
            f"model {m.name}: {len(m.tensors)} tensors matched; layers +{len(m.added_layers)} "
            f"-{len(m.removed_layers)}; tensors +{len(m.added_tensors)} -{len(m.removed_tensors)}, "
            f"{len(m.reshaped_tensors)} reshaped; {m.weights_note}"
        )
        for title, names in (("added layers", m.added_layers), ("removed layers", m.removed_layers)):
            if names:
                shown = ", ".join(names[:8]) + (f", … ({len(names) - 8} more)" if len(names) > 8 else "")
                lines.append(f"  {title}: {shown}")
        for r in m.reshaped_tensors:
            lines.append(f"  reshaped: {r.layer}/{r.param} {r.old_shape} -> {r.new_shape}")
        if m.verdict_changes:
            lines.append("  verdicts: " + ", ".join(f"{v.layer} {v.old} -> {v.new}" for v in m.verdict_changes))
        top = m.top()
        if top:
            lines.append("  most changed:")
            width = max(len(f"{t.layer}/{t.param}") for t in top)
            for t in top:
                name = f"{t.layer}/{t.param}"
                lines.append(
                    f"    {name:<{width}}  rel {_fmt(t.rel_change)}  cos {_fmt(t.cosine, '.4f')}"
                    f"  std x{_fmt(t.std_ratio)}  mean {_fmt(t.mean_delta, '+.3g')}"
                )
    counts = diff.alert_counts()
    lines.append(f"alerts: {counts['critical']} critical, {counts['warning']} warning")
    for a in diff.alerts[:10]:
        where = f"{a.layer}/{a.param}" if a.param else a.layer
        lines.append(f"  {a.severity} {a.model} {where}: {a.message}")
    if len(diff.alerts) > 10:
        lines.append(f"  … {len(diff.alerts) - 10} more (write a report with --output to see all)")
    return lines


def run_diff(
    old: str | Path,
    new: str | Path,
    *,
    output: str | Path | None = None,
    formats: tuple[str, ...] | None = None,
    force: bool = False,
    quiet: bool = False,
) -> int:
    """Compare two reports; write DIR/diff.* with output, else print a summary. Return the exit code."""
    from reportgen.output import preflight, write_atomically

    target = Path(output) if output is not None else None
    if target is not None:
        preflight(target, force)
    diff = compute_diff(load_stats(old), load_stats(new), old_label=str(old), new_label=str(new))
    if target is None:
        if not quiet:
            print("\n".join(summary_lines(diff)))
        return 0
    from reportgen.render.diff_report import render_diff

    files = render_diff(diff, tuple(formats or ("html", "pdf", "json")))
    write_atomically(target, files, force)
    if not quiet:
        print("\n".join(summary_lines(diff)))
        print(f"wrote {target}/ ({', '.join(sorted(files))})")
    return 0
