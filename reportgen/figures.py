"""Draw the report's figures with matplotlib's object-oriented API into inline SVG data."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # never a GUI backend, even if a DISPLAY is set

import numpy as np  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from reportgen.analysis import TensorAnalysis  # noqa: E402
from reportgen.report_model import Comparison, ModelView, ReportModel, SelectedView  # noqa: E402

# Fixed style: identical inputs give byte-identical SVG.
RC = {
    "svg.hashsalt": "reportgen",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "text.parse_math": False,  # layer names are data, never markup
    "path.simplify": True,
}
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
PARAM_WORDS = {"kernel": "weights", "bias": "biases", "gamma": "scales (gamma)", "beta": "shifts (beta)"}


@dataclass(frozen=True)
class FigureData:
    """One rendered figure: an id for the template, words, and the SVG as a data URI."""

    id: str
    title: str
    alt: str
    uri: str


@contextmanager
def _figure(width: float, height: float) -> Iterator[tuple[Figure, Axes]]:
    with rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        yield fig, ax


def _to_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    with rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "reportgen"})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _log_axis(ax: Axes) -> None:
    """Use a log y axis with plain-number tick labels (math text is off for safety)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def param_words(param: str, role: str) -> str:
    """Return words for a parameter in titles: kernel -> weights."""
    return PARAM_WORDS.get(role, PARAM_WORDS.get(param, param))


def histogram(model: ModelView, view: SelectedView, a: TensorAnalysis) -> FigureData | None:
    """Draw one tensor's histogram with its initial bound when known."""
    h = a.stats.histogram
    if h is None:
        return None
    title = f"{model.name} {param_words(a.param, a.role)} in {view.selected.label} layer"
    with _figure(5.2, 2.9) as (fig, ax):
        ax.stairs(h.counts, h.edges, fill=True, color=PALETTE[0], alpha=0.85)
        if a.init is not None and a.init.limit:
            for x in (a.init.mean - a.init.limit, a.init.mean + a.init.limit):
                ax.axvline(x, color=PALETTE[1], linestyle="--", linewidth=1)
            ax.plot([], [], color=PALETTE[1], linestyle="--", label=f"initial bound ±{a.init.limit:.4g}")
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        ax.set_title(title)
        ax.set_xlabel("Value")
        ax.set_ylabel("Count")
        uri = _to_uri(fig)
    alt = (
        f"Histogram of {a.stats.count:,} values of {a.layer} {a.param} in {model.name}: "
        f"min {a.stats.min:.4g}, max {a.stats.max:.4g}, std {a.stats.std:.4g}"
    )
    return FigureData(f"hist-{model.slug}-{view.anchor}-{a.param}", title, alt, uri)


def depth_trend(models: tuple[ModelView, ...], kinds: tuple[str, ...], label: str) -> FigureData | None:
    """Plot mean |w| of each kernel of the given layer types against depth, one series per model."""
    series = []
    for m in models:
        pts = [
            (layer.name, a.stats.mean_abs)
            for layer in m.weighted_layers
            if layer.class_name in kinds and (a := m.analysis(layer.name, "kernel")) is not None
        ]
        if pts:
            series.append((m.name, pts))
    if not series or max(len(p) for _, p in series) < 2:
        return None
    title = f"Mean |w| by depth, {label} layers"
    with _figure(6.4, 3.4) as (fig, ax):
        for i, (name, pts) in enumerate(series):
            ax.plot(range(len(pts)), [v for _, v in pts], marker="o", markersize=3.5, linewidth=1.2,
                    color=PALETTE[i % len(PALETTE)], label=name)
        _log_axis(ax)
        ax.set_title(title)
        ax.set_xlabel(f"{label.capitalize()} layer number (input side first)")
        ax.set_ylabel("Mean of |w| (log scale)")
        ax.legend(fontsize=8, frameon=False)
        uri = _to_uri(fig)
    alt = title + ": " + "; ".join(f"{n}: {len(p)} layers, {p[0][1]:.3g} to {p[-1][1]:.3g}" for n, p in series)
    return FigureData(f"trend-{label.replace(' ', '-')}", title, alt, uri)


def overlay(c: Comparison) -> FigureData:
    """Overlay one layer's value distributions across models, as densities."""
    title = f"{c.layer} {param_words(c.param, c.entries[0][1].role)} across models"
    with _figure(5.6, 3.0) as (fig, ax):
        for i, (name, a) in enumerate(c.entries):
            h = a.stats.histogram
            if h is None:
                continue
            edges = np.asarray(h.edges)
            counts = np.asarray(h.counts, dtype=float)
            total = counts.sum() * np.diff(edges)
            dens = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
            ax.stairs(dens, edges, color=PALETTE[i % len(PALETTE)], linewidth=1.4, label=name)
        _log_axis(ax)
        ax.set_title(title)
        ax.set_xlabel("Value")
        ax.set_ylabel("Density (log scale)")
        ax.legend(fontsize=8, frameon=False)
        uri = _to_uri(fig)
    alt = title + ": " + "; ".join(f"{n} std {a.stats.std:.4g}" for n, a in c.entries)
    return FigureData(f"overlay-{c.layer}-{c.param}".replace("/", "-"), title, alt, uri)


def draw_all(report: ReportModel) -> dict[str, FigureData]:
    """Draw every figure the report uses, keyed by id."""
    out: dict[str, FigureData] = {}

    def put(f: FigureData | None) -> None:
        if f is not None:
            out[f.id] = f

    for m in report.models:
        for view in m.selected:
            for a in view.analyses:
                put(histogram(m, view, a))
    put(depth_trend(report.models, ("Conv2D", "Conv2d", "Conv1D", "Conv3D"), "convolutional"))
    put(depth_trend(report.models, ("Dense", "Linear"), "fully connected"))
    for c in report.comparisons:
        put(overlay(c))
    return out
