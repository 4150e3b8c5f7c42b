"""What goes in the report: models, selected layers, comparisons, findings; no formatting here."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from reportgen.analysis import TensorAnalysis
from reportgen.diagnosis import Alert, ModelDiagnosis, Verdict
from reportgen.layer_kinds import TrendFamily, trend_family
from reportgen.selection import Selected
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef
from reportgen.vocab import SpectralFit


def slugify(text: str) -> str:
    """Return an HTML-id-safe slug for a name (stable, lowercase, ascii)."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower() or "x"
    # A short hash keeps ids distinct for names that differ only in punctuation.
    return f"{slug[:48]}-{hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:6]}"


@dataclass(frozen=True)
class FileHash:
    """One input file and its SHA-256."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SelectedView:
    """A selected layer with the analyses of the parameters to show."""

    selected: Selected
    analyses: tuple[TensorAnalysis, ...]

    @property
    def anchor(self) -> str:
        """Return the HTML id of this layer's detail block."""
        return slugify(self.selected.layer.name)


@dataclass(frozen=True)
class ModelView:
    """One model in the report with everything computed from it."""

    name: str
    slug: str
    source: SourceInfo
    files: tuple[FileHash, ...]
    layers: tuple[LayerInfo, ...]
    analyses: dict[tuple[str, str], TensorAnalysis]
    selected: tuple[SelectedView, ...]
    diagnosis: ModelDiagnosis
    init_statement: str | None = None

    @property
    def param_count(self) -> int:
        """Total number of scalar parameters."""
        return sum(layer.param_count for layer in self.layers)

    @property
    def weighted_layers(self) -> list[LayerInfo]:
        """Layers that hold parameters."""
        return [layer for layer in self.layers if layer.params]

    def analysis(self, layer: str, param: str) -> TensorAnalysis | None:
        """Return the analysis of one tensor, or None."""
        return self.analyses.get((layer, param))

    def kernel(self, layer: LayerInfo) -> TensorAnalysis | None:
        """Return the analysis of a layer's kernel, whatever the format names it (kernel, weight, ...)."""
        ref = layer.param("kernel")
        return self.analysis(layer.name, ref.name) if ref is not None else None

    def verdict(self, layer: str) -> Verdict | None:
        """Return the diagnosis verdict of a layer, or None."""
        for v in self.diagnosis.verdicts:
            if v.layer == layer:
                return v
        return None

    def layer_anchor(self, layer: str) -> str:
        """Return the HTML id of a layer's appendix row."""
        return f"{self.slug}-{slugify(layer)}"


def trend_kernels(m: ModelView, family: TrendFamily) -> list[tuple[LayerInfo, TensorRef, TensorAnalysis]]:
    """Return the trainable kernels a depth trend of this family pools, in depth order: figure and finding alike."""
    out = []
    for layer in m.weighted_layers:
        ref = layer.param("kernel")
        a = m.analysis(layer.name, ref.name) if ref is not None and ref.trainable else None
        if ref is not None and a is not None and trend_family(layer.class_name) == family:
            out.append((layer, ref, a))
    return out


@dataclass(frozen=True)
class Comparison:
    """The same layer (by name) in two or more models, for overlays."""

    layer: str
    param: str
    label: str
    entries: tuple[tuple[str, TensorAnalysis], ...]  # (model name, analysis)


@dataclass(frozen=True)
class Finding:
    """One sentence the numbers support, with the model and layer it is about."""

    text: str
    model: str | None = None
    layer: str | None = None
    kind: str = "observation"  # observation | init | trend | comparison | bias
    importance: float = 0.5  # 0..1, for ranking: how much the finding asks for attention


@dataclass(frozen=True)
class ReportOptions:
    """The config's analysis options that shape the numbers, recorded in the report."""

    bins: int = 60
    spectral: bool = True
    spectral_fit: SpectralFit = "csn"
    compare_to: str | None = None  # the earlier report this build is compared with


@dataclass(frozen=True)
class ReportModel:
    """Everything the renderers need, computed once."""

    title: str
    description: str | None
    generated_at: str  # ISO 8601, UTC
    config_name: str
    config_sha256: str
    models: tuple[ModelView, ...]
    comparisons: tuple[Comparison, ...]
    findings: tuple[Finding, ...]
    alerts: tuple[Alert, ...]
    versions: tuple[tuple[str, str], ...]
    options: ReportOptions = ReportOptions()

    def input_files(self) -> list[FileHash]:
        """Return every model's input files, in model order."""
        return [f for m in self.models for f in m.files]

    def alert_counts(self) -> dict[str, int]:
        """Return the number of alerts per severity, most severe first."""
        out = {"critical": 0, "warning": 0, "info": 0}
        for a in self.alerts:
            out[a.severity] = out.get(a.severity, 0) + 1
        return out

    def model(self, name: str) -> ModelView:
        """Return a model by name."""
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def find_comparisons(models: tuple[ModelView, ...] | list[ModelView]) -> list[Comparison]:
    """Pair selected layers that several models share by name (e.g. untrained vs trained VGG-16)."""
    out: list[Comparison] = []
    seen: set[tuple[str, str]] = set()
    for m in models:
        for view in m.selected:
            for a in view.analyses:
                key = (a.layer, a.param)
                if key in seen:
                    continue
                entries = []
                for other in models:
                    found = other.analysis(a.layer, a.param)
                    if found is not None and found.stats.shape == a.stats.shape:
                        entries.append((other.name, found))
                # All-constant tensors (e.g. zero biases everywhere) have nothing to overlay.
                if len(entries) > 1 and any(e[1].stats.std > 0 for e in entries):
                    seen.add(key)
                    out.append(Comparison(a.layer, a.param, view.selected.label, tuple(entries)))
    return out


def sha256_file(path: Path) -> FileHash:
    """Hash a file in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return FileHash(str(path), h.hexdigest(), path.stat().st_size)


def hash_files_meanwhile(paths: Iterable[Path]) -> Callable[[], tuple[FileHash, ...]]:
    """Start hashing the files on a thread; return a function that waits for the hashes.

    SHA-256 runs at about 1 GB/s per core (hashlib releases the GIL), as long as reading a large
    checkpoint in the page cache takes its tensors' analysis; done alongside the analysis workers it
    costs half the wall time on two cores.
    """
    files = [p for p in paths if p.is_file()]
    box: list[tuple[FileHash, ...]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            box.append(tuple(sha256_file(f) for f in files))
        except BaseException as exc:  # handed to the caller, which raises it where it waits
            errors.append(exc)

    thread = threading.Thread(target=work, name="sha256", daemon=True)
    thread.start()

    def wait() -> tuple[FileHash, ...]:
        thread.join()
        if errors:
            raise errors[0]
        return box[0]

    return wait
