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
from reportgen.layer_kinds import TREND_FAMILIES, TrendFamily
from reportgen.presentation import FigureSpec
from reportgen.report_model import Comparison, ModelView, ReportModel, trend_kernels
from reportgen.stats import ClippedHistogram
from reportgen.thresholds import DEFAULT
from reportgen.vocab import STATUS_WORDS, Status

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


def _log_axis(ax: Axes, which: str = "y") -> None:
    """Use a log axis with plain-number tick labels (math text is off for safety)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))

    def minor(v: float, _pos: object) -> str:
        # Within two decades a single major label leaves the axis unreadable: label 2x and 5x too.
        lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
        if v <= 0 or lo <= 0 or hi / lo > 100:
            return ""
        mantissa = v / 10 ** math.floor(math.log10(v))
        return f"{v:.3g}" if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""

    axis.set_minor_formatter(FuncFormatter(minor))


def param_words(param: str, role: str) -> str:
    """Return words for a parameter in titles: kernel -> weights."""
    return PARAM_WORDS.get(role, PARAM_WORDS.get(param, param))


def _tails_note(ax: Axes, view: ClippedHistogram, s_min: float, s_max: float) -> None:
    """Count the values left outside a readable range in the axes' corners."""
    if view.below:
        ax.text(0.01, 0.97, f"← {view.below:,} below, min {s_min:.3g}", transform=ax.transAxes, va="top", fontsize=7.5)
    if view.above:
        text = f"{view.above:,} above, max {s_max:.3g} →"
        ax.text(0.99, 0.97, text, transform=ax.transAxes, va="top", ha="right", fontsize=7.5)


def _bins(a: TensorAnalysis) -> tuple[np.ndarray, np.ndarray, ClippedHistogram | None]:
    """Return edges and counts to draw: the readable range when the full one squeezes the values."""
    if a.view is not None:
        return np.asarray(a.view.edges), np.asarray(a.view.counts, dtype=float), a.view
    h = a.stats.histogram
    assert h is not None
    return np.asarray(h.edges), np.asarray(h.counts, dtype=float), None


def histogram(model: ModelView, a: TensorAnalysis, label: str, fid: str) -> FigureData | None:
    """Draw one tensor's histogram over where its values are, with its initial bound when known."""
    if a.stats.histogram is None:
        return None
    title = f"{model.name}: {param_words(a.param, a.role)} of {label}"
    edges, counts, view = _bins(a)
    with _figure(5.2, 2.7) as (fig, ax):
        ax.stairs(counts, edges, fill=True, color=PALETTE[0], alpha=0.85)
        if a.init is not None and a.init.limit:
            bounds = (a.init.mean - a.init.limit, a.init.mean + a.init.limit)
            span = edges[-1] - edges[0]
            if view is None and bounds[1] - bounds[0] <= 1.5 * span:
                # The bound sits just beyond the extreme values (a fresh draw): widen the range to show it.
                pad = 0.03 * (bounds[1] - bounds[0])
                ax.set_xlim(min(edges[0], bounds[0] - pad), max(edges[-1], bounds[1] + pad))
            lo, hi = ax.get_xlim()
            shown = [x for x in bounds if lo <= x <= hi]
            for x in shown:
                ax.axvline(x, color=PALETTE[1], linestyle="--", linewidth=1)
            where = "" if len(shown) == 2 else " (beyond the range shown)"
            ax.plot([], [], color=PALETTE[1], linestyle="--", label=f"initial bound ±{a.init.limit:.4g}{where}")
            ax.legend(
                loc="upper right",
                fontsize=7.5,
                frameon=True,
                framealpha=0.9,
                edgecolor="none",
                bbox_to_anchor=(1.0, 0.9) if view is not None else None,
            )
        if view is not None:
            _tails_note(ax, view, a.stats.min, a.stats.max)
        ax.set_title(title, fontsize=9.5)
        ax.set_xlabel("Value" + (" (1st–99th percentile, widened)" if view is not None else ""))
        ax.set_ylabel("Count")
        ax.yaxis.set_major_locator(MaxNLocator(5, integer=True))
        uri = _to_uri(fig)
    alt = (
        f"Histogram of {a.stats.count:,} values of {a.layer} {a.param} in {model.name}: "
        f"min {a.stats.min:.4g}, max {a.stats.max:.4g}, std {a.stats.std:.4g}"
    )
    return FigureData(fid, title, alt, uri)


def _kernel_series(m: ModelView) -> list[tuple[str, TensorAnalysis]]:
    return [(layer.name, a) for layer in m.weighted_layers if (a := m.kernel(layer)) is not None]


def depth_trend(models: tuple[ModelView, ...], family: TrendFamily, fid: str) -> FigureData | None:
    """Plot mean |w| of each kernel of one layer family against depth, one series per model."""
    label = family
    series = []
    for idx, m in enumerate(models):
        pts = [(layer.name, a.stats.mean_abs) for layer, _, a in trend_kernels(m, family)]
        if pts:
            series.append((idx, m.name, pts))
    if not series or max(len(p) for _, _, p in series) < 2:
        return None
    title = f"Mean |w| by depth, {label} layers"
    with _figure(6.4, 3.0) as (fig, ax):
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
    return FigureData(fid, title, alt, uri)


def _ratio_axes(ax: Axes, models: tuple[ModelView, ...]) -> list[str]:
    """Draw each model's kernel std / init std by depth on ax; return one alt phrase per model drawn."""
    said = []
    for idx, m in enumerate(models):
        pts = [
            a.init_check.std_ratio
            for _, a in _kernel_series(m)
            if a.init_check is not None and a.init is not None and a.init.family != "constant"
        ]
        if len(pts) < 2:
            continue
        ax.plot(range(len(pts)), pts, marker="o", markersize=2.5, linewidth=1.1, color=model_color(idx), label=m.name)
        said.append(f"{m.name}: {len(pts)} kernels, {min(pts):.3g} to {max(pts):.3g}")
    ax.axhspan(*DEFAULT.std_ratio_band, color=PALETTE[2], alpha=0.15, linewidth=0)
    _log_axis(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Kernel number (input side first)")
    ax.set_ylabel("std / initial std (log)")
    ax.legend(fontsize=7, frameon=False)
    return said


def ratio_depth(models: tuple[ModelView, ...], fid: str) -> FigureData | None:
    """Plot every kernel's std relative to its initial std against depth, one series per model."""
    title = "Std relative to the initial std, by depth"
    with _figure(6.4, 3.0) as (fig, ax):
        said = _ratio_axes(ax, models)
        ax.set_title(title)
        uri = _to_uri(fig)
    return FigureData(fid, title, title + ": " + "; ".join(said), uri) if said else None


def _density(edges: np.ndarray, counts: np.ndarray, total: int) -> np.ndarray:
    width = np.diff(edges)
    return np.divide(counts, total * width, out=np.zeros_like(counts), where=(width > 0) & (total > 0))


def _overlay_axes(ax: Axes, report: ReportModel, c: Comparison) -> str:
    """Draw one layer's distributions across models, its initial distribution and a normal fit; return alt."""
    order = {m.name: i for i, m in enumerate(report.models)}
    lo, hi = math.inf, -math.inf
    init = None
    for name, a in c.entries:
        if a.stats.histogram is None:
            continue
        edges, counts, _ = _bins(a)
        lo, hi = min(lo, edges[0]), max(hi, edges[-1])
        ax.stairs(
            _density(edges, counts, a.stats.finite),
            edges,
            color=model_color(order.get(name, 0)),
            linewidth=1.5,
            label=f"{name} (kurtosis {a.stats.kurtosis:.2f})",
        )
        init = init or a.init
        v = report.model(name).verdict(a.layer)
        if v is not None and v.status == "moved" and a.stats.std > 0:
            xs = np.linspace(edges[0], edges[-1], 200)
            pdf = np.exp(-0.5 * ((xs - a.stats.mean) / a.stats.std) ** 2) / (a.stats.std * math.sqrt(2 * math.pi))
            ax.plot(
                xs,
                pdf,
                color=model_color(order.get(name, 0)),
                linestyle=":",
                linewidth=1.3,
                label=f"normal fit, std {a.stats.std:.3g}",
            )
    if init is not None and init.family == "uniform" and init.limit:
        a0, b0 = init.mean - init.limit, init.mean + init.limit
        ax.plot(
            [a0, a0, b0, b0],
            [0, 1 / (b0 - a0), 1 / (b0 - a0), 0],
            color="#111827",
            linestyle="--",
            linewidth=1.0,
            label=f"initial {init.spec.kind} ±{init.limit:.3g}",
        )
    elif init is not None and init.family == "normal" and init.std > 0:
        xs = np.linspace(lo, hi, 200)
        pdf = np.exp(-0.5 * ((xs - init.mean) / init.std) ** 2) / (init.std * math.sqrt(2 * math.pi))
        ax.plot(xs, pdf, color="#111827", linestyle="--", linewidth=1.0, label=f"initial {init.spec.kind}")
    ax.set_xlabel("Value")
    ax.set_ylabel("Density")
    # Below the axes: the curves fill the middle of the plot, where a legend would hide them.
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_ylim(bottom=0)
    return "; ".join(f"{n} std {a.stats.std:.4g}, kurtosis {a.stats.kurtosis:.3g}" for n, a in c.entries)


def overlay(report: ReportModel, c: Comparison, fid: str) -> FigureData:
    """Overlay one layer's value distributions across models with its initial distribution."""
    title = f"{c.layer} {param_words(c.param, c.entries[0][1].role)}: untrained vs trained"
    with _figure(5.8, 3.6) as (fig, ax):
        alt = _overlay_axes(ax, report, c)
        ax.set_title(title)
        uri = _to_uri(fig)
    return FigureData(fid, title, title + ": " + alt, uri)


def headline(report: ReportModel, c: Comparison, fid: str) -> FigureData:
    """Draw the report's one figure: a layer untrained vs trained beside std / init std by depth."""
    title = f"{c.layer} untrained vs trained, and every kernel's scale against its start"
    with rc_context(RC):
        fig = Figure(figsize=(9.6, 4.2), layout="constrained")
        FigureCanvasSVG(fig)
        left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.0])
        alt = _overlay_axes(left, report, c)
        left.set_title(f"{c.layer} {param_words(c.param, c.entries[0][1].role)}", fontsize=9.5)
        said = _ratio_axes(right, report.models)
        right.set_title("std / initial std by depth", fontsize=9.5)
        uri = _to_uri(fig)
    return FigureData(fid, title, title + ": " + alt + "; " + "; ".join(said), uri)


VERDICT_COLORS: dict[Status, str] = {
    "at_init": "#dc2626",
    "moved": "#059669",
    "unknown_init": "#9ca3af",
    "no_weights": "#e5e7eb",
}
EXPECTED_COLOR = "#4f46e5"  # the report's colour of an expected "at initialisation"


def diagnosis_depth(model: ModelView, fid: str) -> FigureData | None:
    """Draw verdicts, std / init std and spectral alpha against depth for one model."""
    rows = []
    for layer in model.weighted_layers:
        v = model.verdict(layer.name)
        a = model.kernel(layer)
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
        # At initialisation is the expected result of a model meant to be untrained: not red there.
        expected = model.source.trained is False
        for status in VERDICT_COLORS:
            idx = [i for i, r in enumerate(rows) if r[1] == status]
            if idx:
                at_init = status == "at_init" and expected
                ax0.scatter(
                    idx,
                    [0] * len(idx),
                    marker="s",
                    s=42,
                    color=EXPECTED_COLOR if at_init else VERDICT_COLORS[status],
                    label=STATUS_WORDS[status].short + (" (expected)" if at_init else ""),
                )
        ax0.set_yticks([])
        ax0.grid(False)
        ax0.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7.5, frameon=False)
        fig.suptitle(title, fontsize=10)
        ratios = np.array([r[2] for r in rows], dtype=float)
        if np.isfinite(ratios).any():
            ax1.plot(x, ratios, marker="o", markersize=3, linewidth=1, color=PALETTE[0])
            ax1.axhspan(*DEFAULT.std_ratio_band, color=PALETTE[2], alpha=0.12, linewidth=0)
            ax1.set_yscale("log")
            ax1.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax1.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        else:
            ax1.text(0.5, 0.5, "no known initializer", transform=ax1.transAxes, ha="center", color="#6b7280")
        ax1.set_ylabel("std / init std")
        alphas = np.array([r[3] for r in rows], dtype=float)
        ax2.plot(x, alphas, marker="o", markersize=3, linewidth=1, color=PALETTE[4])
        ax2.axhspan(*DEFAULT.alpha_band, color=PALETTE[2], alpha=0.12, linewidth=0)
        ax2.set_ylabel("spectral alpha")
        ax2.set_xlabel("Layer with weights (input side first)")
        uri = _to_uri(fig)
    counts = {s: sum(r[1] == s for r in rows) for s in VERDICT_COLORS}
    alt = title + ": " + ", ".join(f"{n} {STATUS_WORDS[s].short}" for s, n in counts.items() if n)
    return FigureData(fid, title, alt, uri)


def spectrum(model: ModelView, a: TensorAnalysis, label: str, fid: str) -> FigureData | None:
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
    title = f"Eigenvalues of {label}"
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
        _log_axis(ax, "x")
        _log_axis(ax, "y")
        ax.set_title(title, fontsize=9.5)
        ax.set_xlabel("Eigenvalue λ")
        ax.set_ylabel("Share of eigenvalues ≥ λ")
        ax.legend(fontsize=8, frameon=False, loc="lower left")
        uri = _to_uri(fig)
    alt = f"Eigenvalue spectrum of {a.layer} in {model.name}: {n} eigenvalues, largest {ev[0]:.4g}"
    return FigureData(fid, title, alt, uri)


# Below this many figures a process pool costs more (start-up, matplotlib import) than it saves.
MIN_PARALLEL_FIGURES = 12


def draw_job(report: ReportModel, spec: FigureSpec) -> FigureData | None:
    """Draw one figure the presentation asked for."""
    kind = spec.kind
    if kind == "diagnosis":
        return diagnosis_depth(report.models[spec.model], spec.id)
    if kind in ("histogram", "spectrum"):
        m = report.models[spec.model]
        a = m.analysis(spec.layer, spec.param)
        if a is None:
            return None
        return histogram(m, a, spec.label, spec.id) if kind == "histogram" else spectrum(m, a, spec.label, spec.id)
    if kind == "trend":
        family = next(f for f in TREND_FAMILIES if f == spec.label)
        return depth_trend(report.models, family, spec.id)
    if kind == "ratio_depth":
        return ratio_depth(report.models, spec.id)
    if kind == "headline":
        return headline(report, report.comparisons[spec.index], spec.id)
    return overlay(report, report.comparisons[spec.index], spec.id)


_worker_report: ReportModel | None = None


def _init_worker(report: ReportModel) -> None:
    """Keep the report in a figure worker; Ctrl-C is the parent's to handle."""
    import signal

    from reportgen.processes import exit_with_parent

    global _worker_report
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    _worker_report = report


def _draw_in_worker(job: FigureSpec) -> FigureData | None:
    assert _worker_report is not None
    return draw_job(_worker_report, job)


def draw_all(report: ReportModel, jobs: tuple[FigureSpec, ...], workers: int = 1) -> dict[str, FigureData]:
    """Draw every figure the report uses, keyed by id, on up to `workers` processes.

    Matplotlib holds the GIL while it draws, so figures are spread over processes, not threads; each
    worker receives the report once and draws the jobs it is given. Output is the same either way.
    """
    drawn: list[FigureData | None] | None = None
    if workers > 1 and len(jobs) >= MIN_PARALLEL_FIGURES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        n = min(workers, len(jobs))
        try:
            from reportgen.processes import quiet_start

            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(report,)) as pool:
                with quiet_start():  # map() submits every job, which starts the workers
                    pending = pool.map(_draw_in_worker, jobs, chunksize=max(1, len(jobs) // (4 * n)))
                drawn = list(pending)
        except (BrokenProcessPool, OSError):
            # No worker processes here (a script without a __main__ guard, a limit on processes):
            # the figures are the same drawn in this process, only slower.
            drawn = None
    if drawn is None:
        drawn = [draw_job(report, job) for job in jobs]
    return {f.id: f for f in drawn if f is not None}
