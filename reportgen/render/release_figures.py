"""Draw the figures of release comparisons and histories: overlaid histograms, layer-by-release maps."""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, TwoSlopeNorm

from reportgen.diff import DiffModel
from reportgen.figures import PALETTE, FigureData, _figure, _to_uri, param_words
from reportgen.history import HistoryModel, ModelHistory
from reportgen.report_model import slugify
from reportgen.stats_json import HistogramDoc

# Layer names labelled on a map's axis at most; a 200-layer model gets every 5th name.
MAX_LAYER_TICKS = 40
# Release names labelled on a map's axis at most.
MAX_RELEASE_TICKS = 16
# Lines drawn in the scale-over-releases figure: the layers that moved most.
MAX_LINES = 8
# Share of each histogram's counts left outside an overlay's x axis on either side.
TAIL = 0.001
VERDICT_COLORS = {"moved": "#34d399", "at_init": "#f87171", "unknown_init": "#d1d5db", "no_weights": "#f3f4f6"}
VERDICT_CODES = {"moved": 1, "at_init": 2, "unknown_init": 3, "no_weights": 4}


def _mass_range(*hists: HistogramDoc) -> tuple[float, float] | None:
    """Return the value range holding all but TAIL of each histogram's counts, padded by a tenth."""
    los, his = [], []
    for h in hists:
        counts = np.asarray(h.counts, dtype=float)
        if counts.sum() <= 0:
            continue
        cum = np.cumsum(counts) / counts.sum()
        edges = np.asarray(h.edges)
        los.append(edges[int(np.searchsorted(cum, TAIL, side="right"))])
        his.append(edges[min(len(edges) - 1, int(np.searchsorted(cum, 1 - TAIL, side="left")) + 1)])
    if not los:
        return None
    lo, hi = min(los), max(his)
    pad = 0.1 * (hi - lo) or 1e-12
    return lo - pad, hi + pad


def diff_overlays(diff: DiffModel) -> list[FigureData]:
    """Draw each overlay as densities of both releases on one axis."""
    out = []
    for i, ov in enumerate(diff.overlays):
        with _figure(5.6, 2.8) as (fig, ax):
            for color, label, h, style in (
                (PALETTE[7], diff.old.name, ov.old, "--"),
                (PALETTE[0], diff.new.name, ov.new, "-"),
            ):
                edges = np.asarray(h.edges)
                counts = np.asarray(h.counts, dtype=float)
                total = counts.sum() * np.diff(edges)
                dens = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
                ax.stairs(dens, edges, color=color, linewidth=1.4, linestyle=style, label=label)
            span = _mass_range(ov.old, ov.new)
            if span is not None:
                # A few outliers set the histogram's range; the axis shows where the values are.
                ax.set_xlim(*span)
            ax.set_title(f"{ov.layer} · {ov.param}")
            ax.set_xlabel("Value (outer 0.1% of each side cut off)")
            ax.set_ylabel("Density")
            ax.legend(fontsize=8, frameon=False)
            uri = _to_uri(fig)
        fid = f"diff-{i}-{slugify(ov.model)}-{slugify(ov.layer)}-{slugify(ov.param)}"
        title = f"{ov.model}: {ov.layer} {param_words(ov.param, ov.role)}, {diff.old.name} vs {diff.new.name}"
        alt = f"Overlaid histograms of {ov.model} {ov.layer} {ov.param} in {diff.old.name} and {diff.new.name}"
        out.append(FigureData(fid, title, alt, uri))
    return out


def _layer_ticks(ax, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    step = max(1, math.ceil(len(names) / MAX_LAYER_TICKS))
    ax.set_yticks(range(0, len(names), step), [names[i] for i in range(0, len(names), step)], fontsize=6)


def _release_ticks(ax, names: list[str], offset: int = 0) -> None:  # type: ignore[no-untyped-def]
    step = max(1, math.ceil(len(names) / MAX_RELEASE_TICKS))
    idx = list(range(0, len(names), step))
    ax.set_xticks(idx, [names[i] for i in idx], rotation=45, ha="right", fontsize=7)


def _height(layers: int) -> float:
    return min(9.0, 1.6 + 0.045 * layers)


def _scale_map(h: HistoryModel, m: ModelHistory) -> FigureData | None:
    names = [s.layer for s in m.layers]
    grid = np.array([[np.nan if v is None or v <= 0 else math.log2(v) for v in s.std_init] for s in m.layers])
    if not np.isfinite(grid).any():
        return None
    span = max(1.0, float(np.nanmax(np.abs(grid))))
    with _figure(7.0, _height(len(names))) as (fig, ax):
        ax.grid(False)
        cmap = colormaps["RdBu_r"].with_extremes(bad="#d1d5db")  # absent or no init: grey
        img = ax.imshow(grid, aspect="auto", cmap=cmap, norm=TwoSlopeNorm(0.0, -span, span), interpolation="nearest")
        _layer_ticks(ax, names)
        _release_ticks(ax, [r.name for r in h.releases])
        bar = fig.colorbar(img, ax=ax, shrink=0.6)
        bar.set_label("log2(std / init std)")
        ax.set_title("Scale relative to the initializer, per layer and release")
        uri = _to_uri(fig)
    fid = f"hist-{slugify(m.name)}-scale"
    return FigureData(
        fid,
        f"{m.name}: std relative to the initializer's std, layer by layer (rows) and release by release (columns); "
        "white is 1 (the initial scale), red above, blue below, grey where the layer is absent or has no init.",
        f"Map of std / init std of {m.name} over {len(h.releases)} releases",
        uri,
    )


def _verdict_map(h: HistoryModel, m: ModelHistory) -> FigureData:
    names = [s.layer for s in m.layers]
    grid = np.array([[VERDICT_CODES.get(v or "", 0) for v in s.verdicts] for s in m.layers], dtype=float)
    colors = ["#ffffff"] + [VERDICT_COLORS[k] for k in VERDICT_CODES]
    with _figure(7.0, _height(len(names))) as (fig, ax):
        ax.grid(False)
        ax.imshow(grid, aspect="auto", cmap=ListedColormap(colors), vmin=-0.5, vmax=4.5, interpolation="nearest")
        for sev, marker, color in (("critical", "x", "#7f1d1d"), ("warning", "o", "#92400e")):
            pts = [(r, y) for y, s in enumerate(m.layers) for r, w in enumerate(s.worst) if w == sev]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(xs, ys, marker=marker, s=9, color=color, linewidths=0.8, label=f"{sev} alert")
        for k, c in VERDICT_COLORS.items():
            ax.scatter([], [], marker="s", color=c, label=k.replace("_", " "))
        ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _layer_ticks(ax, names)
        _release_ticks(ax, [r.name for r in h.releases])
        ax.set_title("Verdict and alerts, per layer and release")
        uri = _to_uri(fig)
    return FigureData(
        f"hist-{slugify(m.name)}-verdicts",
        f"{m.name}: each layer's verdict in each release (green moved, red at initialisation, grey unknown, "
        "white absent), with its alerts marked (x critical, o warning).",
        f"Map of verdicts and alerts of {m.name} over {len(h.releases)} releases",
        uri,
    )


def _scale_lines(h: HistoryModel, m: ModelHistory) -> FigureData | None:
    moved: dict[str, float] = {}
    for mv in m.moves:
        moved[mv.layer] = moved.get(mv.layer, 0.0) + (1e6 if math.isinf(mv.size) else mv.size)
    chosen = sorted(moved, key=lambda k: -moved[k])[:MAX_LINES]
    series = [s for s in m.layers if s.layer in chosen and any(v is not None for v in s.std_init)]
    if not series:
        return None
    with _figure(7.0, 3.2) as (fig, ax):
        x = np.arange(len(h.releases))
        for i, s in enumerate(series):
            y = np.array([np.nan if v is None else v for v in s.std_init])
            ax.plot(x, y, marker=".", color=PALETTE[i % len(PALETTE)], linewidth=1.2, label=s.layer)
        ax.axhline(1.0, color="#9ca3af", linewidth=0.8, linestyle=":")
        if m.first_wrong is not None:
            ax.axvline(m.first_wrong, color="#b91c1c", linewidth=1.0, linestyle="--", label="first went wrong")
        _release_ticks(ax, [r.name for r in h.releases])
        ax.set_ylabel("std / init std")
        ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("The layers that moved most")
        uri = _to_uri(fig)
    return FigureData(
        f"hist-{slugify(m.name)}-lines",
        f"{m.name}: std relative to the initializer's std of the {len(series)} layers that moved most between "
        "releases (dotted: the initial scale).",
        f"Lines of std / init std over releases for {len(series)} layers of {m.name}",
        uri,
    )


def history_figures(h: HistoryModel) -> dict[str, list[FigureData]]:
    """Draw each model's maps and lines, keyed by model name."""
    out: dict[str, list[FigureData]] = {}
    for m in h.models:
        if not m.layers:  # a model whose layers hold no tensors: nothing to draw
            out[m.name] = []
            continue
        figs = [_scale_lines(h, m), _scale_map(h, m), _verdict_map(h, m)]
        out[m.name] = [f for f in figs if f is not None]
    return out
