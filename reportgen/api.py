"""The Python API: the CLI's stages for notebooks and scripts, returning the pipeline's typed objects.

    import reportgen
    report = reportgen.analyze(model)              # a Keras model, nn.Module, state dict, arrays or a path
    report                                         # in Jupyter: the summary; report.show() for everything
    [v.layer for v in report.verdicts(status="at_init")]
    report.save("reports/mine")                    # report.html, report.pdf, stats.json, manifest.json

Nothing here imports TensorFlow, PyTorch or huggingface_hub: a model object brings its framework along,
and a file or hf: path loads what its format needs when it is opened.
"""

from __future__ import annotations

import fnmatch
import functools
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen.analysis import TensorAnalysis
from reportgen.config import MEMORY_PREFIX, LoadedConfig, config_from_mapping, load_config
from reportgen.diagnosis import Alert, Verdict
from reportgen.diff import DiffModel
from reportgen.errors import ConfigError, ReportgenError, SourceError
from reportgen.pipeline import BuildOptions, BuildResult, build_report_model, write_report
from reportgen.report_model import Finding, ModelView, ReportModel
from reportgen.sources.base import LayerInfo, TensorRef, WeightSource
from reportgen.stats import TensorStats
from reportgen.vocab import OUTPUT_FORMATS

Progress = Callable[[str, int, int], None]  # (message, done, total)
ConfigLike = str | Path | Mapping[str, Any]


@dataclass(frozen=True)
class TensorRow:
    """One tensor of a report as a flat record: `pandas.DataFrame(report.table())` gives a table."""

    model: str
    layer: str
    class_name: str
    param: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    zero_frac: float
    nan: int
    inf: int
    init: str | None  # the initializer's distribution, e.g. 'U(-0.0998, +0.0998)'
    std_ratio: float | None  # std / the initializer's std
    ks_stat: float | None  # Kolmogorov-Smirnov distance to the initializer
    status: str | None  # the layer's verdict: at_init, moved, unknown_init, no_weights


@dataclass(frozen=True)
class TensorSummary:
    """One tensor as `inspect_weights` sees it: where it sits and its statistics."""

    layer: LayerInfo
    ref: TensorRef
    stats: TensorStats


class Report:
    """A built report: the ReportModel with ways to filter it, show it in Jupyter and save it."""

    def __init__(self, model: ReportModel, config: LoadedConfig, timings: dict[str, float] | None = None) -> None:
        self.model = model
        self.config = config
        self.timings = dict(timings or {})

    # ---------------------------------------------------------------- reading

    @property
    def title(self) -> str:
        """The report's title."""
        return self.model.title

    @property
    def models(self) -> tuple[ModelView, ...]:
        """Every model with its layers, analyses and diagnosis."""
        return self.model.models

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """Every alert of every model, most severe first within a model."""
        return self.model.alerts

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The sentences written from the numbers."""
        return self.model.findings

    def __getitem__(self, name: str) -> ModelView:
        """Return a model by name."""
        try:
            return self.model.model(name)
        except KeyError:
            known = ", ".join(repr(m.name) for m in self.models)
            raise KeyError(f"no model {name!r} in this report (models: {known})") from None

    def _views(self, model: str | None) -> tuple[ModelView, ...]:
        return self.models if model is None else (self[model],)

    def verdicts(self, model: str | None = None, status: str | None = None) -> list[Verdict]:
        """Return the per-layer verdicts, of one model or all, optionally of one status (e.g. 'at_init')."""
        return [v for m in self._views(model) for v in m.diagnosis.verdicts if status is None or v.status == status]

    def summary(self, model: str | None = None) -> dict[str, str]:
        """Return each model's one-line summary, e.g. '13 of 16 layers look untrained'."""
        return {m.name: m.diagnosis.summary for m in self._views(model)}

    def analyses(self, model: str | None = None, layer: str | None = None) -> list[TensorAnalysis]:
        """Return the analysis of every tensor; layer is an exact name or a shell-style pattern."""
        return [
            a
            for m in self._views(model)
            for a in m.analyses.values()
            if layer is None or fnmatch.fnmatchcase(a.layer, layer)
        ]

    def table(self, model: str | None = None) -> list[TensorRow]:
        """Return one flat row per tensor, for a DataFrame or a quick filter."""
        rows = []
        for m in self._views(model):
            by_layer = {layer.name: layer for layer in m.layers}
            for (layer_name, param), a in m.analyses.items():
                ref = by_layer[layer_name].param(param) if layer_name in by_layer else None
                verdict = m.verdict(layer_name)
                s, check = a.stats, a.init_check
                rows.append(
                    TensorRow(
                        model=m.name,
                        layer=layer_name,
                        class_name=by_layer[layer_name].class_name if layer_name in by_layer else "Unknown",
                        param=param,
                        role=a.role,
                        shape=tuple(s.shape),
                        dtype=ref.dtype if ref is not None else s.dtype,
                        mean=s.mean,
                        std=s.std,
                        min=s.min,
                        max=s.max,
                        zero_frac=s.zero_frac,
                        nan=s.nan,
                        inf=s.inf,
                        init=a.init.describe() if a.init is not None else None,
                        std_ratio=check.std_ratio if check is not None else None,
                        ks_stat=check.ks_stat if check is not None else None,
                        status=verdict.status if verdict is not None else None,
                    )
                )
        return rows

    # ---------------------------------------------------------------- showing and writing

    @functools.cached_property
    def _full_html(self) -> str:
        from reportgen.pipeline import render_outputs

        return render_outputs(self.model, ("html",), {}, workers=1)["report.html"].decode("utf-8")

    def html(self) -> str:
        """Return the full self-contained HTML report (drawn on first call, then kept)."""
        return self._full_html

    def show(self, height: int = 720) -> FullReport:
        """Return the full report for inline display: a sandboxed frame, nothing fetched from a network."""
        return FullReport(self.html(), height)

    def _repr_html_(self) -> str:
        from reportgen.render.notebook import render_summary

        return render_summary(self.model)

    def __repr__(self) -> str:
        lines = [f"<reportgen.Report {self.title!r}: {len(self.models)} model(s), {len(self.alerts)} alert(s)>"]
        lines += [f"  {m.name}: {m.diagnosis.summary}" for m in self.models]
        return "\n".join(lines)

    def save(
        self,
        output: str | Path | None = None,
        formats: Sequence[str] | None = None,
        force: bool = False,
        workers: int = 1,
    ) -> BuildResult:
        """Write the report folder (report.html, report.pdf, stats.json, manifest.json) atomically.

        output defaults to the config's; formats to the config's (html, pdf, json); an existing folder
        is replaced only with force=True.
        """
        fmts = _formats(formats)
        options = BuildOptions(output=str(output) if output else None, formats=fmts, force=force, workers=workers)
        return write_report(self.model, self.config, options, dict(self.timings))


@dataclass(frozen=True)
class FullReport:
    """The full HTML report in a sandboxed iframe: scripts run, but apart from the notebook's page."""

    html: str
    height: int = 720

    def _repr_html_(self) -> str:
        # srcdoc keeps the page self-contained; its own CSP still forbids every network fetch, and the
        # sandbox (no allow-same-origin) keeps its script away from the notebook. An untrusted notebook
        # drops the frame and keeps the summary.
        return (
            f'<iframe title="reportgen report" sandbox="allow-scripts" style="width:100%;'
            f'height:{int(self.height)}px;border:1px solid #ccc" srcdoc="{html.escape(self.html, quote=True)}">'
            "</iframe>"
        )


@dataclass(frozen=True)
class Comparison:
    """Two reports compared: the DiffModel, its terminal summary, and a way to save it."""

    diff: DiffModel
    formats: tuple[str, ...] = field(default=OUTPUT_FORMATS)

    def summary(self) -> str:
        """Return the summary `reportgen diff` prints."""
        from reportgen.releases import diff_summary

        return "\n".join(diff_summary(self.diff))

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"

    def __repr__(self) -> str:
        return self.summary()

    def save(self, output: str | Path, formats: Sequence[str] | None = None, force: bool = False) -> Path:
        """Write diff.html, diff.pdf and diff.json into a folder, atomically."""
        from reportgen.output import preflight, write_atomically
        from reportgen.render.diff_report import render_diff

        target = Path(output)
        preflight(target, force)
        write_atomically(target, render_diff(self.diff, _formats(formats) or self.formats), force)
        return target


# ---------------------------------------------------------------------------- building


def build(
    config: ConfigLike,
    *,
    models: Mapping[str, Any] | None = None,
    workers: int = 0,
    executor: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """Build a report from a YAML config file or a config mapping, without writing anything.

    models gives the in-memory models that the config's `path: memory:KEY` entries name: a Keras
    model, a torch.nn.Module, a state dict, or a mapping of name -> array. Call .save() to write it.
    """
    loaded = load_config(config) if isinstance(config, str | Path) else config_from_mapping(dict(config))
    memory = _open_memory(loaded, models or {})
    timings: dict[str, float] = {}
    options = BuildOptions(workers=workers, executor=executor)
    try:
        report = build_report_model(loaded, options, progress, timings, memory)
    finally:
        for source in memory.values():
            source.close()
    return Report(report, loaded, timings)


def analyze(
    model: Any,
    *,
    name: str | None = None,
    title: str | None = None,
    init: str | None = None,
    layers: Sequence[Mapping[str, Any]] | None = None,
    params: Sequence[str] | None = None,
    bins: int = 60,
    spectral: bool = True,
    output: str | None = None,
    workers: int = 0,
    executor: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """Build a report on one model, or on several given as a mapping of name -> model.

    A model is a Keras model, a torch.nn.Module, a PyTorch state dict, a mapping of name -> array, or
    a path (a weights file or folder, pkg:..., hf:ORG/NAME). init states the initializer of kernels
    whose framework records none (see the config reference); layers and params are the config's
    selectors, e.g. layers=[{"type": "Dense"}], params=["kernel"].
    """
    entries = _named_models(model, name)
    config: dict[str, Any] = {"title": title or _default_title(entries), "bins": bins, "spectral": spectral}
    if output is not None:
        config["output"] = output
    memory: dict[str, Any] = {}
    config["models"] = []
    for label, obj in entries:
        entry: dict[str, Any] = {"name": label}
        if isinstance(obj, str | Path):
            entry["path"] = str(obj)
        else:
            entry["path"] = f"{MEMORY_PREFIX}{label}"
            memory[label] = obj
        if init is not None:
            entry["init"] = init
        if layers is not None:
            entry["layers"] = [dict(s) for s in layers]
        if params is not None:
            entry["params"] = list(params)
        config["models"].append(entry)
    return build(config, models=memory, workers=workers, executor=executor, progress=progress)


def inspect_weights(model: Any, pattern: str | None = None, bins: int = 60) -> list[TensorSummary]:
    """Return every tensor of a weights file, folder or in-memory model with its statistics.

    pattern keeps layers whose name matches a shell-style glob, as `reportgen inspect --filter`.
    """
    from reportgen.stats import compute_stats

    with _open_any(model) as source:
        out = []
        for layer in source.layers():
            if not layer.params or (pattern is not None and not fnmatch.fnmatchcase(layer.name, pattern)):
                continue
            for ref in layer.params:
                chunks = functools.partial(source.iter_chunks, ref)
                out.append(
                    TensorSummary(layer, ref, compute_stats(chunks, shape=ref.shape, dtype=ref.dtype, bins=bins))
                )
    return out


def compare(old: Report | str | Path, new: Report | str | Path, *, weights: bool = True) -> Comparison:
    """Compare two reports (Report objects, report folders or stats.json files), as `reportgen diff`.

    With weights=True, tensors whose files still exist with their recorded hashes are also compared
    value by value (relative change, cosine similarity).
    """
    from reportgen.diff import compute_diff
    from reportgen.stats_json import LoadedStats, load, of_report

    def document(side: Report | str | Path) -> tuple[LoadedStats, str]:
        if isinstance(side, Report):
            # The same typed document a saved stats.json gives, built from the report without JSON.
            return of_report(side.model), side.title
        return load(side), str(side)

    (old_doc, old_label), (new_doc, new_label) = document(old), document(new)
    return Comparison(compute_diff(old_doc, new_doc, old_label=old_label, new_label=new_label, weights=weights))


# ---------------------------------------------------------------------------- helpers


def _open_any(model: Any) -> WeightSource:
    """Open a path (file, folder, pkg:, hf:) or an in-memory model as a WeightSource."""
    from reportgen.sources.memory import open_object

    if isinstance(model, str | Path):
        from reportgen.sources.detect import open_path

        text = str(model)
        if text.startswith(("hf:", "pkg:")):
            return open_path(_resolve_scheme(text))
        return open_path(Path(text).expanduser())
    return open_object(model)


def _resolve_scheme(text: str) -> Path:
    if text.startswith("hf:"):
        from reportgen.sources.hf import resolve_hf

        return resolve_hf(text)
    from reportgen.config import resolve_package_path

    return resolve_package_path(text[4:], Path("<api>"))


def _open_memory(loaded: LoadedConfig, models: Mapping[str, Any]) -> dict[str, WeightSource]:
    """Open the in-memory models the config names; refuse ones it does not name, so typos surface."""
    from reportgen.sources.memory import open_object

    named = {entry.memory_key: entry for entry in loaded.models if entry.memory_key is not None}
    unused = sorted(set(models) - set(named))
    if unused:
        raise ConfigError(
            f"{loaded.path}: models={{...}} gives {', '.join(map(repr, unused))}, which no 'path: memory:KEY' names"
        )
    opened: dict[str, WeightSource] = {}
    try:
        for key, obj in models.items():
            entry = named[key]
            try:
                opened[key] = open_object(obj, entry.init_plan.default)
            except SourceError as exc:
                raise SourceError(f"{entry.where_source}: {exc}") from None
    except BaseException:
        for source in opened.values():
            source.close()
        raise
    return opened


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _is_model(value: Any) -> bool:
    """Whether value is a whole model: a framework model, a path, or a PyTorch state dict."""
    from reportgen.sources.memory import is_keras_model, is_torch_module, is_torch_tensor

    if isinstance(value, str | Path) or is_keras_model(value) or is_torch_module(value):
        return True
    return isinstance(value, Mapping) and bool(value) and all(is_torch_tensor(v) for v in value.values())


def _named_models(model: Any, name: str | None) -> list[tuple[str, Any]]:
    """Return [(name, model)]: a mapping whose every value is a model gives several, anything else one.

    A mapping of arrays (nested or not) is one model; compare several of those through build().
    """
    if isinstance(model, Mapping) and model and all(_is_model(v) for v in model.values()):
        if name is not None:
            raise ConfigError("name= goes with a single model; a mapping of models names each by its key")
        return [(str(k), v) for k, v in model.items()]
    return [(name or _default_name(model), model)]


def _default_name(model: Any) -> str:
    if isinstance(model, str | Path):
        return str(model)
    own = getattr(model, "name", None)
    if isinstance(own, str) and own:
        return own
    if isinstance(model, Mapping):
        return "state dict" if any(type(v).__module__.startswith("torch") for v in model.values()) else "arrays"
    return type(model).__name__


def _default_title(entries: list[tuple[str, Any]]) -> str:
    return " vs ".join(label for label, _ in entries) if len(entries) <= 3 else f"{len(entries)} models"


def _formats(formats: Sequence[str] | None) -> tuple[str, ...] | None:
    if formats is None:
        return None
    items = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in items if f not in OUTPUT_FORMATS]
    if bad or not items:
        raise ConfigError(f"formats are {', '.join(OUTPUT_FORMATS)} (got {list(items)!r})")
    return items


__all__ = [
    "Comparison",
    "FullReport",
    "Report",
    "ReportgenError",
    "TensorRow",
    "TensorSummary",
    "analyze",
    "build",
    "compare",
    "inspect_weights",
]
