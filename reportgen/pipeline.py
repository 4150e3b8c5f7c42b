"""Run the stages in order: config -> sources -> analysis -> diagnosis -> report model -> renderers."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from reportgen import __version__
from reportgen.analysis import AnalysisOptions
from reportgen.config import LoadedConfig, ModelEntry
from reportgen.diagnosis import Alert, diagnose_model
from reportgen.errors import ConfigError, NetworkError, ReportgenError, SelectionError, SourceError
from reportgen.executor import Executors, ModelJobs, reopen_recipe
from reportgen.init_plan import PlannedSource
from reportgen.output import preflight, sha256_bytes, write_atomically
from reportgen.report_model import (
    ModelView,
    ReportModel,
    ReportOptions,
    SelectedView,
    find_comparisons,
    hash_files_meanwhile,
    slugify,
)
from reportgen.selection import select
from reportgen.sources.base import WeightSource
from reportgen.stats_json import LoadedStats

Progress = Callable[[str, int, int], None]  # (message, done, total)

VERSION_PACKAGES = ("numpy", "scipy", "h5py", "matplotlib", "jinja2", "weasyprint", "keras", "tensorflow")


@dataclass(frozen=True)
class BuildOptions:
    """Command-line choices that override or complete the config."""

    output: str | None = None
    formats: tuple[str, ...] | None = None
    force: bool = False
    workers: int = 0  # 0: one per core
    now: datetime | None = None
    executor: str | None = None  # inline | threads | processes | dask; None: the config's, else by source
    scheduler: str | None = None  # Dask scheduler address (command line or environment only); implies dask


@dataclass
class BuildResult:
    """Where the report went and how long each stage took."""

    out_dir: Path
    files: list[str]
    report: ReportModel
    timings: dict[str, float] = field(default_factory=dict)
    compare_error: str | None = None  # why compare_to gave no diff.*; the report itself was written


def build_time(now: datetime | None = None) -> datetime:
    """Return the build time: SOURCE_DATE_EPOCH when set, so rebuilds are byte-identical."""
    if now is not None:
        return now
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC).replace(microsecond=0)


def library_versions() -> tuple[tuple[str, str], ...]:
    """Return versions of reportgen, Python and the libraries that shape the numbers."""
    out = [("reportgen", __version__), ("python", platform.python_version())]
    for name in VERSION_PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(out)


def open_model(entry: ModelEntry, memory: Mapping[str, WeightSource] | None = None) -> PlannedSource:
    """Open the weights source a model entry names, with the initializers its config and file give.

    memory holds the sources of `path: memory:KEY` entries (models handed to the Python API).
    """
    inner, path = _open_source(entry, memory)
    source = PlannedSource(inner, entry.init_plan, path)
    for where, hits, rule in zip(entry.where_overrides, source.rule_hits, entry.config.init_overrides, strict=True):
        if not hits:
            source.close()
            raise SelectionError(f"{where}: {', '.join(rule.patterns)!r} matches no layer of {entry.name!r}")
    return source


def _open_source(
    entry: ModelEntry, memory: Mapping[str, WeightSource] | None = None
) -> tuple[WeightSource, Path | None]:
    """Open the weights source a model entry names, as the file has it; return it with its local path."""
    if entry.config.keras is not None:
        from reportgen.init_draw import open_application
        from reportgen.sources.hf import resolve_hf

        weights = entry.weights
        if isinstance(weights, str) and weights.startswith("hf:"):
            weights = resolve_hf(weights)
        if isinstance(weights, Path) and not weights.exists():
            raise SourceError(f"{entry.where_weights}: no such file: {weights}")
        try:
            return open_application(entry.config.keras, weights, entry.name, seed=entry.config.seed), None
        except NetworkError as exc:
            raise NetworkError(f"{entry.where_weights}: {exc}") from None
        except SourceError as exc:
            raise SourceError(f"{entry.where_source}: {exc}") from None
    from reportgen.sources.detect import open_path
    from reportgen.sources.hf import resolve_hf

    where = entry.where_source
    if entry.memory_key is not None:
        if memory is None or entry.memory_key not in memory:
            given = ", ".join(sorted(memory or {})) or "none"
            raise ConfigError(f"{where}: no in-memory model {entry.memory_key!r} was passed (given: {given})")
        return memory[entry.memory_key], None
    path = entry.path
    if entry.hf is not None:
        try:
            path = resolve_hf(entry.hf)
        except NetworkError as exc:
            raise NetworkError(f"{where}: {exc}") from None
        except SourceError as exc:
            raise SourceError(f"{where}: {exc}") from None
    assert path is not None
    if not path.exists():
        raise SourceError(f"{where}: no such file or folder: {path}")
    try:
        return open_path(path), path
    except SourceError as exc:
        raise SourceError(f"{where}: {exc}") from None


def check_keras_caches(loaded: LoadedConfig) -> None:
    """Name every ImageNet weights file missing from the Keras cache at once, before any model is built."""
    wanted = [
        (entry.where_weights, entry.name, entry.config.keras)
        for entry in loaded.models
        if entry.config.keras and entry.weights == "imagenet"
    ]
    if wanted:
        from reportgen.sources.keras_app import check_imagenet_cache

        check_imagenet_cache(wanted)


def build_report_model(
    loaded: LoadedConfig,
    options: BuildOptions,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    memory: Mapping[str, WeightSource] | None = None,
) -> ReportModel:
    """Load every model, analyse its tensors and assemble the ReportModel.

    memory holds the in-memory models that `path: memory:KEY` entries name (the Python API's).
    """
    from reportgen.findings import write_findings

    cfg = loaded.config
    timings = timings if timings is not None else {}
    aopts = AnalysisOptions(
        bins=cfg.bins,
        spectral=cfg.spectral,
        spectral_fit=cfg.spectral_fit,
        spectral_layers=tuple(cfg.spectral_layers) if cfg.spectral_layers else None,
    )
    views: list[ModelView] = []
    sources: list[tuple[ModelEntry, PlannedSource]] = []
    t0 = time.perf_counter()
    check_keras_caches(loaded)
    try:
        for entry in loaded.models:
            if progress:
                progress(f"loading {entry.name}", entry.index, len(loaded.models))
            sources.append((entry, open_model(entry, memory)))
    except BaseException:
        for _, opened in sources:
            opened.close()
        raise
    timings["load"] = time.perf_counter() - t0
    alerts: list[Alert] = []
    executors = Executors.from_choices((options.executor, options.scheduler), (cfg.executor, None), options.workers)
    try:
        # Workers get each tensor's initializer with its job, so they reopen the file as it is.
        jobs = [
            ModelJobs(source, tuple(source.layers()), reopen_recipe(source, source.path, None), entry.config.name)
            for entry, source in sources
        ]
        # A selection naming no layer fails now, before the analysis.
        picks = [
            select(list(m.layers), e.config.layers, e.config.params, e.config.name, where=f"{e.where}.")
            for (e, _), m in zip(sources, jobs, strict=True)
        ]
        # The input files are hashed on threads while the workers analyse.
        hashing = [hash_files_meanwhile(source.info.files) for _, source in sources]
        t1 = time.perf_counter()
        found = executors.analyze_many(jobs, aopts, progress)
        timings["analysis"] = time.perf_counter() - t1
        for (entry, source), model, chosen, analyses, hashes in zip(sources, jobs, picks, found, hashing, strict=True):
            mc = entry.config
            layers = list(model.layers)  # open_path already gave kernels the config's `init:` where needed
            diag = diagnose_model(mc.name, layers, analyses)
            alerts.extend(diag.alerts)
            selected = tuple(SelectedView(s, tuple(analyses[(s.layer.name, p.name)] for p in s.params)) for s in chosen)
            files = hashes()
            views.append(
                ModelView(
                    name=mc.name,
                    slug=slugify(mc.name),
                    source=source.info,
                    files=files,
                    layers=tuple(layers),
                    analyses=analyses,
                    selected=selected,
                    diagnosis=diag,
                    init_statement=source.note or None,
                )
            )
    finally:
        executors.close()
        for _, source in sources:
            source.close()
    comparisons = find_comparisons(views)
    return ReportModel(
        title=cfg.title,
        description=cfg.description,
        generated_at=build_time(options.now).isoformat().replace("+00:00", "Z"),
        config_name=loaded.path.name,
        config_sha256=hashlib.sha256(loaded.text.encode()).hexdigest(),
        models=tuple(views),
        comparisons=tuple(comparisons),
        findings=tuple(write_findings(views, comparisons)),
        alerts=tuple(alerts),
        versions=library_versions(),
        options=ReportOptions(cfg.bins, cfg.spectral, cfg.spectral_fit, cfg.compare_to),
    )


def manifest(report: ReportModel, loaded: LoadedConfig, outputs: dict[str, bytes]) -> bytes:
    """Describe inputs, outputs and versions with hashes, for the archive."""
    inputs = report.input_files()
    doc = {
        "manifest_version": "1.0",
        "generated_at": report.generated_at,
        "config": {"path": str(loaded.path), "sha256": report.config_sha256},
        "inputs": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in inputs],
        "outputs": {name: {"sha256": sha256_bytes(data), "size": len(data)} for name, data in sorted(outputs.items())},
        "versions": dict(report.versions),
        "platform": {"python": sys.version.split()[0], "machine": platform.machine(), "system": platform.system()},
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def render_outputs(
    report: ReportModel, formats: tuple[str, ...], timings: dict[str, float], workers: int = 1, pdf: str = "brief"
) -> dict[str, bytes]:
    """Render the requested formats to bytes, drawing the figures on up to `workers` processes."""
    from reportgen.figures import draw_all
    from reportgen.presentation import present
    from reportgen.render.html import render_html
    from reportgen.render.json_report import render_json

    out: dict[str, bytes] = {}
    if "html" in formats or "pdf" in formats:
        page = present(report, pdf_full=pdf == "full")
        t = time.perf_counter()
        figures = draw_all(report, page.figure_specs, workers)
        timings["figures"] = time.perf_counter() - t
        t = time.perf_counter()
        if "html" in formats:
            out["report.html"] = render_html(page, figures).encode("utf-8")
        timings["html"] = time.perf_counter() - t
        if "pdf" in formats:
            from reportgen.render.pdf import render_pdf

            t = time.perf_counter()
            out["report.pdf"] = render_pdf(render_html(page, figures, for_pdf=True))
            timings["pdf"] = time.perf_counter() - t
    if "json" in formats:
        out["stats.json"] = render_json(report).encode("utf-8")
    return out


def _load_compare_to(loaded: LoadedConfig) -> tuple[LoadedStats | None, str | None]:
    """Read the earlier report named by compare_to, or say in one line why it cannot be read."""
    from reportgen.stats_json import load

    try:
        return load(loaded.resolve(str(loaded.config.compare_to))), None
    except ReportgenError as exc:
        return None, f"{loaded.where('compare_to')}: {exc}"


def _compare(
    loaded: LoadedConfig, old: LoadedStats, report: ReportModel, target: Path, formats: tuple[str, ...]
) -> dict[str, bytes]:
    """Compare the earlier report with this build's own report and render diff.*."""
    from reportgen.diff import compute_diff
    from reportgen.render.diff_report import render_diff
    from reportgen.stats_json import of_report

    # The new side is the document this build writes into target/stats.json, typed straight from the report.
    new = of_report(report, target / "stats.json")
    diff = compute_diff(old, new, old_label=str(loaded.config.compare_to), new_label=str(target))
    return render_diff(diff, formats)


def build(
    loaded: LoadedConfig,
    options: BuildOptions,
    progress: Progress | None = None,
    memory: Mapping[str, WeightSource] | None = None,
) -> BuildResult:
    """Build the report folder for a config; nothing is written unless everything succeeds.

    A comparison with compare_to never costs the report: when it fails, the report is written without
    diff.* and BuildResult.compare_error says why.
    """
    preflight(loaded.output_dir(options.output), options.force)
    old_stats, compare_error = None, None
    if loaded.config.compare_to:
        # Read the earlier report before the heavy work, so its problem is known early; it still costs nothing.
        old_stats, compare_error = _load_compare_to(loaded)
    timings: dict[str, float] = {}
    report = build_report_model(loaded, options, progress, timings, memory)
    return write_report(report, loaded, options, timings, (old_stats, compare_error))


def write_report(
    report: ReportModel,
    loaded: LoadedConfig,
    options: BuildOptions,
    timings: dict[str, float] | None = None,
    compare_to: tuple[LoadedStats | None, str | None] | None = None,
) -> BuildResult:
    """Render a built report in the asked formats, with its comparison, and write its folder atomically.

    compare_to is the earlier report as _load_compare_to read it; None reads it now if the config names one.
    """
    target = loaded.output_dir(options.output)
    preflight(target, options.force)
    timings = timings if timings is not None else {}
    if compare_to is None:
        compare_to = _load_compare_to(loaded) if loaded.config.compare_to else (None, None)
    old_stats, compare_error = compare_to
    formats = tuple(options.formats or loaded.config.formats)
    # Figures go to worker processes like the tensors, unless the build was asked to stay in-process.
    inline = (options.executor or loaded.config.executor) == "inline"
    workers = 1 if inline else (options.workers or os.cpu_count() or 1)
    outputs = render_outputs(report, formats, timings, workers, loaded.config.pdf)
    if old_stats is not None:
        try:
            outputs.update(_compare(loaded, old_stats, report, target, formats))
        except KeyboardInterrupt:
            raise
        except ReportgenError as exc:
            compare_error = f"{loaded.where('compare_to')}: comparison failed: {exc}"
        except Exception as exc:  # a bug in the comparison must not cost the report it compares
            compare_error = f"{loaded.where('compare_to')}: comparison failed: {type(exc).__name__}: {exc}"
    outputs["manifest.json"] = manifest(report, loaded, outputs)
    write_atomically(target, outputs, options.force)
    return BuildResult(target, sorted(outputs), report, timings, compare_error)


__all__ = ["BuildOptions", "BuildResult", "ReportgenError", "build", "build_report_model", "write_report"]
