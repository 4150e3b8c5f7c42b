"""Read stats.json into typed, frozen objects: version check, upgrade of 0.9, one-line errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reportgen.errors import SourceError
from reportgen.vocab import Severity, Status

CURRENT_VERSION = "1.0"
# Versions this reader understands; older ones are upgraded on load.
READABLE_VERSIONS = ("0.9", "1.0")


class _Frozen(BaseModel):
    # Fields this reader does not use (spectral metrics, evidence, ...) are kept in the file, not here.
    model_config = ConfigDict(frozen=True, extra="ignore")


class HistogramDoc(_Frozen):
    """Histogram of a tensor's finite values."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


class StatsDoc(_Frozen):
    """Per-tensor statistics; a statistic of no finite values is None."""

    count: int
    finite: int | None = None
    nan: int = 0
    inf: int = 0
    zeros: int | None = None
    near_zero: int | None = None  # None in files written before the near-zero count
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    median: float | None = None
    p01: float | None = None
    p99: float | None = None
    mean_abs: float | None = None
    max_abs: float | None = None
    l2: float | None = None
    histogram: HistogramDoc | None = None

    @property
    def nonfinite(self) -> int:
        """Return the number of NaN and Inf values."""
        return self.nan + self.inf


class InitDoc(_Frozen):
    """The distribution a tensor was drawn from, as the report inferred it."""

    kind: str
    family: str | None = None
    std: float | None = None
    limit: float | None = None
    mean: float | None = None


class ParamDoc(_Frozen):
    """One tensor of a layer; stats is None for tensors that were not analysed."""

    name: str
    role: str = "other"
    shape: tuple[int, ...] = ()
    dtype: str = ""
    stats: StatsDoc | None = None
    init: InitDoc | None = None


class VerdictDoc(_Frozen):
    """A layer's diagnosis."""

    status: Status
    label: str = ""
    reason: str = ""


class LayerDoc(_Frozen):
    """One layer with its tensors and verdict."""

    index: int
    name: str
    class_name: str = ""
    params: tuple[ParamDoc, ...] = ()
    verdict: VerdictDoc | None = None

    @property
    def status(self) -> Status | None:
        """Return the verdict's status, or None without a verdict."""
        return None if self.verdict is None else self.verdict.status


class FileDoc(_Frozen):
    """An input weights file with the hash it had at build time."""

    path: str
    sha256: str
    size: int | None = None


class SourceDoc(_Frozen):
    """Where a model's weights came from."""

    format: str = ""
    description: str = ""
    trained: bool | None = None
    files: tuple[FileDoc, ...] = ()


class ModelDoc(_Frozen):
    """One model of a report."""

    name: str
    source: SourceDoc = SourceDoc()
    summary: str | None = None
    looks_trained: bool | None = None
    layers: tuple[LayerDoc, ...] = ()


class AlertDoc(_Frozen):
    """An alert the build raised."""

    code: str
    severity: Severity
    model: str
    layer: str
    param: str | None = None
    message: str = ""


class ToolDoc(_Frozen):
    """The program that wrote the document."""

    name: str = "reportgen"
    version: str = ""


class StatsJson(_Frozen):
    """The whole stats.json document, at the current version."""

    schema_version: str
    title: str | None = None
    generated_at: str | None = None
    tool: ToolDoc = ToolDoc()
    models: tuple[ModelDoc, ...]
    alerts: tuple[AlertDoc, ...] = ()


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
        doc = StatsJson.model_validate_json(text)
        if doc.schema_version == CURRENT_VERSION:
            return LoadedStats(doc, file, CURRENT_VERSION)
    except ValidationError:
        pass  # the slow path below finds the version and names the first problem
    try:
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{file}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{file}: not a stats.json (invalid JSON at line {exc.lineno})") from None
    except RecursionError:
        raise SourceError(f"{file}: not a stats.json (nested too deeply)") from None
    return parse(raw, str(file), file)
