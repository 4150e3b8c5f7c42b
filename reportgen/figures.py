"""Draw the report's figures with matplotlib's object-oriented API into inline SVG data."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # never a GUI backend, even if a DISPLAY is set

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from reportgen.analysis import TensorAnalysis
from reportgen.report_model import Comparison, ModelView, ReportModel, SelectedView

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Fixed style: identical inputs give byte-identical SVG.
RC: dict[RcKeyType, Any] = {
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
SPECTRUM_POINTS = 400  # points drawn of an eigenvalue CCDF; a 4096-wide layer would make a 700 KB SVG
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


def model_color(index: int) -> str:
    """Return the colour of the index-th model, the same in every figure of a report."""
    return PALETTE[index % len(PALETTE)]


def _log_axis(ax: Axes) -> None:
    """Use a log y axis with plain-number tick labels (math text is off for safety)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))

    def minor(v: float, _pos: object) -> str:
        # Within two decades a single major label leaves the axis unreadable: label 2x and 5x too.
        lo, hi = ax.get_ylim()
        if v <= 0 or lo <= 0 or hi / lo > 100:
            return ""
        mantissa = v / 10 ** math.floor(math.log10(v))
        return f"{v:.3g}" if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


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
            ax.legend(loc="upper right", fontsize=8, frameon=True, framealpha=0.9, edgecolor="none")
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
    for idx, m in enumerate(models):
        pts = [
            (layer.name, a.stats.mean_abs)
            for layer in m.weighted_layers
            if layer.class_name in kinds and (a := m.analysis(layer.name, "kernel")) is not None
        ]
        if pts:
            series.append((idx, m.name, pts))
    if not series or max(len(p) for _, _, p in series) < 2:
        return None
    title = f"Mean |w| by depth, {label} layers"
    with _figure(6.4, 3.4) as (fig, ax):
        for idx, name, pts in series:
            ax.plot(
                range(len(pts)),
                [v for _, v in pts],
                marker="o",
                markersize=3.5,
                linewidth=1.2,
                color=model_color(idx),
                label=name,
            )
        _log_axis(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel(f"{label.capitalize()} layer number (input side first)")
        ax.set_ylabel("Mean of |w| (log scale)")
        ax.legend(fontsize=8, frameon=False)
        uri = _to_uri(fig)
    alt = title + ": " + "; ".join(f"{n}: {len(p)} layers, {p[0][1]:.3g} to {p[-1][1]:.3g}" for _, n, p in series)
    return FigureData(f"trend-{label.replace(' ', '-')}", title, alt, uri)


def overlay(c: Comparison, order: dict[str, int]) -> FigureData:
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
            ax.stairs(dens, edges, color=model_color(order.get(name, i)), linewidth=1.4, label=name)
        _log_axis(ax)
        ax.set_title(title)
        ax.set_xlabel("Value")
        ax.set_ylabel("Density (log scale)")
        ax.legend(fontsize=8, frameon=False)
        uri = _to_uri(fig)
    alt = title + ": " + "; ".join(f"{n} std {a.stats.std:.4g}" for n, a in c.entries)
    return FigureData(f"overlay-{c.layer}-{c.param}".replace("/", "-"), title, alt, uri)


VERDICT_COLORS = {
    "at_init": "#dc2626",
    "moved": "#059669",
    "unknown_init": "#9ca3af",
    "no_weights": "#e5e7eb",
}
VERDICT_WORDS = {
    "at_init": "at initialisation",
    "moved": "moved",
    "unknown_init": "unknown init",
    "no_weights": "no weights",
}


def diagnosis_depth(model: ModelView) -> FigureData | None:
    """Draw verdicts, std / init std and spectral alpha against depth for one model."""
    rows = []
    for layer in model.weighted_layers:
        v = model.verdict(layer.name)
        a = model.analysis(layer.name, "kernel")
        if v is None or a is None:
            continue
        ratio = a.init_check.std_ratio if a.init_check is not None else float("nan")
        alpha = a.spectral.alpha if a.spectral is not None else float("nan")
        rows.append((layer.name, v.status, ratio, alpha))
    if len(rows) < 2:
        return None
    x = np.arange(len(rows))
    title = f"{model.name}: verdict, std / init std and alpha by depth"
    with rc_context(RC):
        fig = Figure(figsize=(6.6, 4.6), layout="constrained")
        FigureCanvasSVG(fig)
        ax0, ax1, ax2 = fig.subplots(3, 1, sharex=True, height_ratios=[0.5, 1.2, 1.2])
        for status in VERDICT_COLORS:
            idx = [i for i, r in enumerate(rows) if r[1] == status]
            if idx:
                ax0.scatter(
                    idx,
                    [0] * len(idx),
                    marker="s",
                    s=42,
                    color=VERDICT_COLORS[status],
                    label=VERDICT_WORDS[status],
                )
        ax0.set_yticks([])
        ax0.grid(False)
        ax0.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7.5, frameon=False)
        fig.suptitle(title, fontsize=10)
        ratios = np.array([r[2] for r in rows], dtype=float)
        if np.isfinite(ratios).any():
            ax1.plot(x, ratios, marker="o", markersize=3, linewidth=1, color=PALETTE[0])
            ax1.axhspan(0.9, 1.1, color=PALETTE[2], alpha=0.12, linewidth=0)
            ax1.set_yscale("log")
            ax1.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax1.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        else:
            ax1.text(0.5, 0.5, "no known initializer", transform=ax1.transAxes, ha="center", color="#6b7280")
        ax1.set_ylabel("std / init std")
        alphas = np.array([r[3] for r in rows], dtype=float)
        ax2.plot(x, alphas, marker="o", markersize=3, linewidth=1, color=PALETTE[4])
        ax2.axhspan(2, 6, color=PALETTE[2], alpha=0.12, linewidth=0)
        ax2.set_ylabel("spectral alpha")
        ax2.set_xlabel("Layer with weights (input side first)")
        uri = _to_uri(fig)
    counts = {s: sum(r[1] == s for r in rows) for s in VERDICT_COLORS}
    alt = title + ": " + ", ".join(f"{n} {VERDICT_WORDS[s]}" for s, n in counts.items() if n)
    return FigureData(f"diag-{model.slug}", title, alt, uri)


def spectrum(model: ModelView, view: SelectedView, a: TensorAnalysis) -> FigureData | None:
    """Plot a kernel's eigenvalue distribution (CCDF, log-log) with the fitted power-law tail."""
    sp = a.spectral
    if sp is None or sp.evals is None or len(sp.evals) < 2:
        return None
    ev = np.sort(np.asarray(sp.evals, dtype=float))[::-1]
    ev = ev[ev > 0]
    if ev.size < 2:
        return None
    n = ev.size
    ccdf = np.arange(1, n + 1) / n
    if n > SPECTRUM_POINTS:
        # Log-spaced ranks keep the curve's shape and the tail while keeping the SVG small.
        keep = np.unique(np.geomspace(1, ev.size, SPECTRUM_POINTS).astype(int) - 1)
        ev, ccdf = ev[keep], ccdf[keep]
    title = f"{model.name} {view.selected.label}: eigenvalue spectrum"
    with _figure(5.2, 2.9) as (fig, ax):
        ax.loglog(ev, ccdf, marker=".", markersize=2, linewidth=0, color=PALETTE[0], label="eigenvalues of WᵀW")
        alpha, xmin, n_tail = sp.alpha, sp.xmin, sp.n_tail
        if np.isfinite(alpha) and xmin > 0 and n_tail > 1:
            xs = np.geomspace(xmin, ev[0], 50)
            ax.loglog(
                xs,
                (n_tail / n) * (xs / xmin) ** (1 - alpha),
                color=PALETTE[1],
                linewidth=1.4,
                label=f"power law, alpha {alpha:.2f} (x ≥ {xmin:.3g})",
            )
        for lab in (ax.xaxis, ax.yaxis):
            lab.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            lab.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        ax.set_title(title)
        ax.set_xlabel("Eigenvalue λ")
        ax.set_ylabel("Share of eigenvalues ≥ λ")
        ax.legend(fontsize=8, frameon=False, loc="lower left")
        uri = _to_uri(fig)
    alt = f"Eigenvalue spectrum of {a.layer} in {model.name}: {n} eigenvalues, largest {ev[0]:.4g}"
    return FigureData(f"spec-{model.slug}-{view.anchor}", title, alt, uri)


# A figure to draw, by position in the report: (kind, model, selected layer, analysis) or (kind, index).
FigureJob = tuple[Any, ...]
_CONV_KINDS = ("Conv2D", "Conv2d", "Conv1D", "Conv3D")
_DENSE_KINDS = ("Dense", "Linear")
# Below this many figures a process pool costs more (start-up, matplotlib import) than it saves.
MIN_PARALLEL_FIGURES = 12


def figure_jobs(report: ReportModel) -> list[FigureJob]:
    """List every figure the report uses, in report order, as small picklable jobs."""
    jobs: list[FigureJob] = []
    for mi, m in enumerate(report.models):
        jobs.append(("diagnosis", mi))
        for vi, view in enumerate(m.selected):
            for ai, a in enumerate(view.analyses):
                jobs.append(("histogram", mi, vi, ai))
                if a.role == "kernel":
                    jobs.append(("spectrum", mi, vi, ai))
    jobs += [("trend", "conv"), ("trend", "dense")]
    jobs += [("overlay", ci) for ci in range(len(report.comparisons))]
    return jobs


def draw_job(report: ReportModel, job: FigureJob) -> FigureData | None:
    """Draw one figure of figure_jobs(report)."""
    kind = job[0]
    if kind == "diagnosis":
        return diagnosis_depth(report.models[job[1]])
    if kind in ("histogram", "spectrum"):
        m = report.models[job[1]]
        view = m.selected[job[2]]
        a = view.analyses[job[3]]
        return histogram(m, view, a) if kind == "histogram" else spectrum(m, view, a)
    if kind == "trend":
        if job[1] == "conv":
            return depth_trend(report.models, _CONV_KINDS, "convolutional")
        return depth_trend(report.models, _DENSE_KINDS, "fully connected")
    order = {m.name: i for i, m in enumerate(report.models)}
    return overlay(report.comparisons[job[1]], order)


_worker_report: ReportModel | None = None


def _init_worker(report: ReportModel) -> None:
    """Keep the report in a figure worker; Ctrl-C is the parent's to handle."""
    import signal

    global _worker_report
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_report = report


def _draw_in_worker(job: FigureJob) -> FigureData | None:
    assert _worker_report is not None
    return draw_job(_worker_report, job)


def draw_all(report: ReportModel, workers: int = 1) -> dict[str, FigureData]:
    """Draw every figure the report uses, keyed by id, on up to `workers` processes.

    Matplotlib holds the GIL while it draws, so figures are spread over processes, not threads; each
    worker receives the report once and draws the jobs it is given. Output is the same either way.
    """
    jobs = figure_jobs(report)
    drawn: list[FigureData | None] | None = None
    if workers > 1 and len(jobs) >= MIN_PARALLEL_FIGURES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        n = min(workers, len(jobs))
        try:
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(report,)) as pool:
                drawn = list(pool.map(_draw_in_worker, jobs, chunksize=max(1, len(jobs) // (4 * n))))
        except (BrokenProcessPool, OSError):
            # No worker processes here (a script without a __main__ guard, a limit on processes):
            # the figures are the same drawn in this process, only slower.
            drawn = None
    if drawn is None:
        drawn = [draw_job(report, job) for job in jobs]
    return {f.id: f for f in drawn if f is not None}
