"""stats.json both ways: the typed document, its writer from a report, its reader with version upgrades.

The JSON Schema in reportgen/schema/stats.schema.json is generated from these types (`make schema`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from reportgen.errors import SourceError
from reportgen.vocab import Role, Severity, SpectralFit, Status

if TYPE_CHECKING:
    from reportgen.analysis import TensorAnalysis
    from reportgen.report_model import ModelView, ReportModel
    from reportgen.sources.base import LayerInfo, TensorRef

CURRENT_VERSION: Final = "1.0"
# Versions this reader understands; older ones are upgraded on load.
READABLE_VERSIONS = ("0.9", "1.0")


def _finite(value: Any) -> Any:
    """Turn NaN and Inf into None and NumPy floats into float; integers stay integers."""
    if value is None or isinstance(value, bool | int | str):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value  # the field's own validation names the problem
    return f if math.isfinite(f) else None


# A float that is NaN or infinite is written as null.
Num = Annotated[float | None, BeforeValidator(_finite)]
# A number recorded as the code computed it: an integer stays an integer (e.g. alert numbers, quantisation).
Number = Annotated[int | float | None, BeforeValidator(_finite)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]


class _Doc(BaseModel):
    # Readers ignore fields they do not know (a newer writer's additions); the schema still forbids them.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        from_attributes=True,
        use_attribute_docstrings=True,
        json_schema_extra={"additionalProperties": False},
    )


class HistogramDoc(_Doc):
    """Histogram of a tensor's finite values."""

    edges: Annotated[tuple[float, ...], Field(min_length=2)]
    counts: Annotated[tuple[Count, ...], Field(min_length=1)]


class StatsDoc(_Doc):
    """Per-tensor statistics; a statistic of no finite values is null."""

    shape: tuple[Count, ...]
    dtype: str
    count: Count
    finite: Count
    nan: Count
    inf: Count
    zeros: Count
    zero_frac: Num
    near_zero: Count | None = None
    """Finite values with |w| <= 1e-3 * max_abs, exact zeros included; absent in files written before it."""
    near_zero_frac: Num = None
    """near_zero / finite; absent in files written before it."""
    mean: Num
    std: Num
    """Population std (ddof=0)."""
    var: Num
    min: Num
    max: Num
    median: Num
    p01: Num
    """1st percentile (linear interpolation); added in 1.0."""
    p99: Num
    """99th percentile; added in 1.0."""
    mean_abs: Num
    max_abs: Num
    l2: Num
    skewness: Num
    kurtosis: Num
    """Excess kurtosis (Fisher)."""
    histogram: HistogramDoc | None

    @property
    def nonfinite(self) -> int:
        """Return the number of NaN and Inf values."""
        return self.nan + self.inf


class InitDoc(_Doc):
    """The distribution a tensor was drawn from, as the report inferred it."""

    kind: str
    origin: str
    family: str
    fan_in: int | None
    fan_out: int | None
    scale: Num
    limit: Num
    std: Num
    mean: Num


class InitCheckDoc(_Doc):
    """How the values compare with the distribution they were drawn from."""

    family: str
    n_values: int
    ks_sample: int
    ks_stat: Num
    ks_pvalue: Num
    bound: Num
    bound_rule: str
    inside_share: Num
    expected_inside: Num
    std_ratio: Num
    mean_in_std: Num
    kurtosis: Num
    expected_kurtosis: Num
    const_share: Num


class SpectralDoc(_Doc):
    """Eigenvalue spectrum of W^T W (per slice for convolutions)."""

    n_matrices: int
    matrix_shape: tuple[int, int]
    n_evals: int
    spectral_norm: Num
    sum_evals: Num
    stable_rank: Num
    alpha: Num
    alpha_weighted: Num
    xmin: Num
    ks_distance: Num
    n_tail: int
    precision: Literal["float32", "float64"]


# Keys a tensor carries only when it was analysed; all or none of them are written.
_ANALYSIS_KEYS = ("stats", "init", "init_check", "spectral", "dead_units", "units")


def _param_schema(schema: dict[str, Any]) -> None:
    """Say in ParamDoc's schema that stats and quant are absent, never null, and stats brings the analysis."""
    for key in ("stats", "quant"):
        prop = schema["properties"][key]
        prop.update(next(option for option in prop.pop("anyOf") if option.get("type") != "null"))
        del prop["default"]
    schema["additionalProperties"] = False
    schema["dependentRequired"] = {"stats": list(_ANALYSIS_KEYS[1:])}


class ParamDoc(_Doc):
    """One tensor of a layer; the analysis fields are absent for tensors that were not analysed."""

    model_config = ConfigDict(json_schema_extra=_param_schema)

    name: str
    role: Role
    shape: tuple[Count, ...]
    dtype: str
    key: str
    """Address of the tensor inside its file."""
    quant: dict[str, Number] | None = None
    """Scale and zero point recorded beside an integer tensor."""
    stats: StatsDoc | None = None
    init: InitDoc | None = None
    init_check: InitCheckDoc | None = None
    spectral: SpectralDoc | None = None
    dead_units: Count | None = None
    """Output units whose weights are all exactly zero."""
    units: Count | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.quant is None:
            del out["quant"]
        if self.stats is None:
            for key in _ANALYSIS_KEYS:
                del out[key]
        return out


class VerdictDoc(_Doc):
    """The diagnosis of one layer: is it still at its initialisation?"""

    layer: str
    status: Status
    label: str
    reason: str
    class_name: str = ""
    param: str | None = None
    """The tensor the verdict rests on (the kernel where there is one)."""
    evidence: InitCheckDoc | None = None
    moved_by: tuple[tuple[str, Number], ...] = ()
    """How far the tensor is from its initial draw: (measure, value) pairs."""
    notes: tuple[str, ...] = ()
    hint: bool = False
    """True when the reason is a guess without a known initializer."""


class LayerDoc(_Doc):
    """One layer with its tensors and verdict."""

    index: int
    name: str
    class_name: str
    type_source: Literal["config", "inferred"]
    path: str
    output_shape: tuple[int | None, ...] | None
    param_count: Count
    feeds: tuple[str, ...]
    verdict: VerdictDoc | None
    params: tuple[ParamDoc, ...]

    @property
    def status(self) -> Status | None:
        """Return the verdict's status, or None without a verdict."""
        return None if self.verdict is None else self.verdict.status


class FileDoc(_Doc):
    """An input weights file with the hash it had at build time; diff reopens it when it still matches."""

    path: str
    sha256: Sha256
    size: Count


class SourceDoc(_Doc):
    """Where a model's weights came from."""

    format: str
    description: str
    trained: bool | None
    files: tuple[FileDoc, ...]


class SelectedDoc(_Doc):
    """A layer the report shows in detail, and the tensors shown."""

    layer: str
    label: str
    selector: str
    params: tuple[str, ...]


class ModelDoc(_Doc):
    """One model of a report."""

    name: str
    source: SourceDoc
    init_statement: str | None
    """Initializer stated in the config, if any."""
    param_count: Count
    layer_count: Count
    summary: str | None
    looks_trained: bool | None
    selected: tuple[SelectedDoc, ...]
    layers: tuple[LayerDoc, ...]


class AlertDoc(_Doc):
    """An alert the build raised."""

    code: str
    severity: Severity
    model: str
    layer: str
    message: str
    param: str | None = None
    numbers: tuple[tuple[str, Number], ...] = ()


class FindingDoc(_Doc):
    """One sentence the numbers support, with the model and layer it is about."""

    text: str
    model: str | None = None
    layer: str | None = None
    kind: str = "observation"
    importance: Annotated[float, Field(ge=0, le=1)] = 0.5
    """How much the finding asks for attention, for ranking (0..1)."""


class ToolDoc(_Doc):
    """The program that wrote the document."""

    name: Literal["reportgen"]
    version: str


class ConfigDoc(_Doc):
    """The config file the report was built from."""

    name: str
    sha256: Sha256


class OptionsDoc(_Doc):
    """Analysis options that shape the numbers."""

    bins: int
    spectral: bool
    spectral_fit: SpectralFit = "csn"
    """Power-law fit rule: Clauset-Shalizi-Newman, or WeightWatcher's xmin rule; absent (csn) before 1.0."""
    compare_to: str | None = None
    """The earlier report this build was compared with; absent before 1.0."""


class StatsJson(_Doc):
    """Every number of every tensor of every model in a report; NaN and Inf are null, keys sorted."""

    schema_version: Literal["1.0"]
    """Layout version; readers refuse versions they do not know."""
    tool: ToolDoc
    title: str
    generated_at: str
    """ISO 8601 UTC build time (SOURCE_DATE_EPOCH when set)."""
    config: ConfigDoc
    options: OptionsDoc
    models: tuple[ModelDoc, ...]
    alerts: tuple[AlertDoc, ...]
    findings: tuple[FindingDoc, ...]


# ---------------------------------------------------------------------------- writing


def _param(p: TensorRef, a: TensorAnalysis | None) -> ParamDoc:
    """Build one tensor's entry from its source description and its analysis, if any."""
    fields: dict[str, Any] = {"name": p.name, "role": p.role, "shape": p.shape, "dtype": p.dtype, "key": p.key}
    if p.quant:
        fields["quant"] = dict(p.quant)
    if a is not None:
        init = None
        if a.init is not None:
            init = InitDoc.model_validate({"kind": a.init.spec.kind, "origin": a.init.spec.origin, **vars(a.init)})
        fields.update(
            stats=StatsDoc.model_validate(a.stats),
            init=init,
            init_check=a.init_check,
            spectral=a.spectral,
            dead_units=a.dead_units,
            units=a.units,
        )
    return ParamDoc.model_validate(fields)


def _layer(m: ModelView, layer: LayerInfo) -> LayerDoc:
    """Build one layer's entry with its verdict and tensors."""
    verdict = m.verdict(layer.name)
    return LayerDoc(
        index=layer.index,
        name=layer.name,
        class_name=layer.class_name,
        type_source=layer.type_source,  # type: ignore[arg-type]  # validated: config | inferred
        path=layer.path,
        output_shape=layer.output_shape,
        param_count=layer.param_count,
        feeds=layer.feeds,
        verdict=None if verdict is None else VerdictDoc.model_validate(verdict),
        params=tuple(_param(p, m.analysis(layer.name, p.name)) for p in layer.params),
    )


def _model(m: ModelView) -> ModelDoc:
    """Build one model's entry."""
    return ModelDoc(
        name=m.name,
        source=SourceDoc(
            format=m.source.format,
            description=m.source.description,
            trained=m.source.trained,
            files=tuple(FileDoc.model_validate(f) for f in m.files),
        ),
        init_statement=m.init_statement,
        param_count=m.param_count,
        layer_count=len(m.layers),
        summary=m.diagnosis.summary,
        looks_trained=m.diagnosis.looks_trained,
        selected=tuple(
            SelectedDoc(
                layer=v.selected.layer.name,
                label=v.selected.label,
                selector=v.selected.selector,
                params=tuple(a.param for a in v.analyses),
            )
            for v in m.selected
        ),
        layers=tuple(_layer(m, layer) for layer in m.layers),
    )


def stats_document(report: ReportModel) -> StatsJson:
    """Build the typed stats.json document of a report."""
    from reportgen import __version__

    return StatsJson(
        schema_version=CURRENT_VERSION,
        tool=ToolDoc(name="reportgen", version=__version__),
        title=report.title,
        generated_at=report.generated_at,
        config=ConfigDoc(name=report.config_name, sha256=report.config_sha256),
        options=OptionsDoc.model_validate(report.options),
        models=tuple(_model(m) for m in report.models),
        alerts=tuple(AlertDoc.model_validate(a) for a in report.alerts),
        findings=tuple(FindingDoc.model_validate(f) for f in report.findings),
    )


def dumps(doc: StatsJson) -> str:
    """Serialise a document deterministically: sorted keys, one-space indent, no NaN."""
    return json.dumps(doc.model_dump(), indent=1, sort_keys=True, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LoadedStats:
    """A stats.json as read: the document, the file it came from and the version it was written in."""

    doc: StatsJson
    file: Path | None  # None for a document that never was a file (a build's own report)
    read_version: str

    @property
    def folder(self) -> Path | None:
        """Return the report folder, where relative input paths are resolved."""
        return None if self.file is None else self.file.parent

    @property
    def release(self) -> str:
        """Return the report's release name: its folder's name, e.g. v1.3."""
        if self.file is None:
            return "this build"
        return self.file.parent.name if self.file.name == "stats.json" else self.file.stem


def of_report(report: ReportModel, file: Path | None = None) -> LoadedStats:
    """Return a build's own document, typed as a saved stats.json reads, without a round trip through JSON."""
    return LoadedStats(stats_document(report), file, CURRENT_VERSION)


def upgrade_v09(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a 0.9 document to 1.0: add p01/p99 to stats and verdict to layers, as null."""
    for m in doc.get("models", []):
        for layer in m.get("layers", []) if isinstance(m, dict) else []:
            if not isinstance(layer, dict):
                continue
            layer.setdefault("verdict", None)
            for p in layer.get("params", []):
                if isinstance(p, dict) and isinstance(p.get("stats"), dict):
                    p["stats"].setdefault("p01", None)
                    p["stats"].setdefault("p99", None)
    doc["schema_version"] = CURRENT_VERSION
    return doc


def _where(loc: tuple[int | str, ...]) -> str:
    """Return a pydantic error location as models[0].layers[3].name."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def parse(raw: Any, where: str, file: Path | None = None) -> LoadedStats:
    """Check the version of a parsed document, upgrade it and type it; errors name `where`."""
    if not isinstance(raw, dict) or "schema_version" not in raw or not isinstance(raw.get("models"), list):
        raise SourceError(f"{where}: not a stats.json (no schema_version and models)")
    version = str(raw["schema_version"])
    if version not in READABLE_VERSIONS:
        raise SourceError(
            f"{where}: unsupported schema_version {version!r} (this reportgen reads {', '.join(READABLE_VERSIONS)})"
        )
    if version == "0.9":
        raw = upgrade_v09(raw)
    try:
        doc = StatsJson.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SourceError(f"{where}: {_where(first['loc'])}: {first['msg']}{more}") from None
    return LoadedStats(doc, file, version)


def _missing_hint(path: Path) -> str:
    """Explain a missing report folder that an interrupted build moved aside."""
    aside = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    return f" ({aside[0].name} beside it holds the previous report of an interrupted build)" if aside else ""


def load(path: Path | str) -> LoadedStats:
    """Read a stats.json, or the one in a report folder."""
    from reportgen.sources.safety import check_path

    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder{_missing_hint(path)}")
    file = path / "stats.json" if path.is_dir() else path
    if not path.is_dir():
        check_path(path)  # a FIFO or device is refused before it is opened
    if not file.is_file():
        raise SourceError(f"{path}: folder holds no stats.json (build the report with the json format)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # its text would quote the byte
        raise SourceError(f"{file}: not a stats.json (not UTF-8 at byte {exc.start})") from None
    except OSError as exc:
        raise SourceError(f"{file}: cannot read ({exc.strerror or exc})") from None
    try:
        # Fast path for a well-formed current document: parsed and typed in one pass, half the time of
        # json.loads followed by validation (a history reads dozens of 1 MB files).
        return LoadedStats(StatsJson.model_validate_json(text), file, CURRENT_VERSION)
    except ValidationError:
        pass  # the slow path below finds the version and names the first problem
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{file}: not a stats.json (invalid JSON at line {exc.lineno})") from None
    except RecursionError:
        raise SourceError(f"{file}: not a stats.json (nested too deeply)") from None
    return parse(raw, str(file), file)


# ---------------------------------------------------------------------------- schema


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of stats.json, generated from the types above."""
    from pydantic.json_schema import GenerateJsonSchema

    class _NoTitles(GenerateJsonSchema):
        # Titles would only repeat each property's name.
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

    body = StatsJson.model_json_schema(schema_generator=_NoTitles)
    body.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://reportgen.invalid/schema/stats-{CURRENT_VERSION}.json",
        "title": "reportgen stats.json",
        **body,
    }


def schema_text() -> str:
    """Return the schema as checked in: two-space indent, sorted keys, a final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
