"""Load and validate a report config: YAML in, a typed ReportConfig out, every error at once."""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reportgen.errors import ConfigError, printable
from reportgen.init_plan import NAMED, OVERRIDE_ROLES, InitPlan, InitRule, parse_spec
from reportgen.sources.safety import PathWords, check_path, open_regular
from reportgen.vocab import OUTPUT_FORMATS, ExecutorKind, OutputFormat, SpectralFit

MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; anything this large is not one
MEMORY_PREFIX = "memory:"  # path: memory:KEY names a model object handed to the Python API
MAX_YAML_DEPTH = 32  # the schema nests four levels (models[].layers[].params[]); deeper is not a config
SCHEDULER_ENV = "REPORTGEN_SCHEDULER"
SCHEDULER_REFUSED = (
    "a config cannot choose a Dask scheduler (its workers run code in reportgen); "
    f"pass --scheduler ADDRESS or set {SCHEDULER_ENV}=ADDRESS when you run the build"
)

# Keras applications known to this release; checked again against keras when the model is built.
KERAS_APPLICATIONS = [
    "ConvNeXtBase",
    "ConvNeXtLarge",
    "ConvNeXtSmall",
    "ConvNeXtTiny",
    "ConvNeXtXLarge",
    "DenseNet121",
    "DenseNet169",
    "DenseNet201",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "EfficientNetV2L",
    "EfficientNetV2M",
    "EfficientNetV2S",
    "InceptionResNetV2",
    "InceptionV3",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Large",
    "MobileNetV3Small",
    "NASNetLarge",
    "NASNetMobile",
    "ResNet101",
    "ResNet101V2",
    "ResNet152",
    "ResNet152V2",
    "ResNet50",
    "ResNet50V2",
    "VGG16",
    "VGG19",
    "Xception",
]

INIT_NAMES = NAMED

Format = OutputFormat
FORMATS = OUTPUT_FORMATS

ROLE_RE = re.compile(r"^(first|last|all)\s+(\w+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerSelector(_Strict):
    """One way of picking layers: by index, name, glob, type or role."""

    index: int | None = None
    name: str | None = None
    glob: str | None = None
    type: str | None = None
    role: str | None = None
    label: str | None = Field(default=None, description="words for titles, e.g. 'first convolutional'")
    params: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LayerSelector:
        given = [k for k in ("index", "name", "glob", "type", "role") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of index, name, glob, type, role" + (f" (got {', '.join(given)})" if given else "")
            )
        if self.role is not None and not ROLE_RE.match(self.role.strip()):
            raise ValueError(f"role must read 'first TYPE', 'last TYPE' or 'all TYPE', got {self.role!r}")
        return self

    def describe(self) -> str:
        """Return the selector as the user wrote it, e.g. 'index -6'."""
        for key in ("index", "name", "glob", "type", "role"):
            value = getattr(self, key)
            if value is not None:
                return f"{key} {value}"
        return "?"


InitValue = str | dict[str, Any]


class InitOverride(_Strict):
    """Initializers for the tensors of some layers, picked by name or glob."""

    layers: str | list[str] = Field(description="a layer name or glob, or a list of them")
    kernel: InitValue | None = None
    bias: InitValue | None = None
    gamma: InitValue | None = None
    beta: InitValue | None = None
    embedding: InitValue | None = None
    recurrent_kernel: InitValue | None = None
    depthwise_kernel: InitValue | None = None
    pointwise_kernel: InitValue | None = None

    @model_validator(mode="after")
    def _valid(self) -> InitOverride:
        given = [role for role in OVERRIDE_ROLES if getattr(self, role) is not None]
        if not given:
            raise ValueError(f"give an initializer for at least one of {', '.join(OVERRIDE_ROLES)}")
        for role in given:
            try:
                parse_spec(getattr(self, role))
            except ValueError as exc:
                raise ValueError(f"{role}: {exc}") from None
        if not self.patterns:
            raise ValueError("'layers' names no layer")
        return self

    @property
    def patterns(self) -> tuple[str, ...]:
        """Return the layer names or globs as a tuple."""
        return tuple(p for p in ([self.layers] if isinstance(self.layers, str) else self.layers) if p)

    def rule(self) -> InitRule:
        """Return the override as a rule of the initializer plan."""
        specs = tuple((r, parse_spec(getattr(self, r))) for r in OVERRIDE_ROLES if getattr(self, r) is not None)
        return InitRule(self.patterns, specs)


class ModelConfig(_Strict):
    """One model: a Keras application or a weights file, and the layers to look at."""

    name: str
    keras: str | None = None
    weights: str | None = None
    path: str | None = None
    init: InitValue | None = None
    init_overrides: list[InitOverride] = Field(default_factory=list)
    seed: int = 0
    layers: list[LayerSelector] | None = None
    params: list[str] = Field(default_factory=lambda: ["kernel", "bias"])

    @field_validator("keras")
    @classmethod
    def _known_application(cls, v: str | None) -> str | None:
        if v is not None and v not in KERAS_APPLICATIONS:
            near = difflib.get_close_matches(v, KERAS_APPLICATIONS, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ValueError(f"unknown Keras application {v!r}{hint}")
        return v

    @field_validator("init")
    @classmethod
    def _known_init(cls, v: InitValue | None) -> InitValue | None:
        if isinstance(v, str) and v not in INIT_NAMES:
            near = difflib.get_close_matches(v, INIT_NAMES, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"unknown initializer {v!r}{hint}; known: {', '.join(INIT_NAMES)}")
        if v is not None:
            parse_spec(v)
        return v

    def init_plan(self) -> InitPlan:
        """Return the model's initializer statement and per-layer overrides as a plan."""
        default = parse_spec(self.init) if self.init is not None else None
        return InitPlan(default, tuple(o.rule() for o in self.init_overrides))

    @field_validator("path")
    @classmethod
    def _path_scheme(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("hf:"):
            from reportgen.sources.hf import parse_hf

            parse_hf(v)  # raises ValueError with what is wrong
        if v is not None and v.startswith(MEMORY_PREFIX) and not v[len(MEMORY_PREFIX) :].strip():
            raise ValueError(f"{v!r}: write memory:KEY, KEY being a model passed to reportgen.build(models=...)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.keras is None) == (self.path is None):
            raise ValueError("give exactly one of 'keras' (an application name) or 'path' (a weights file)")
        if self.keras is not None and "weights" not in self.model_fields_set:
            raise ValueError("'weights' is required with 'keras': null (random init), imagenet, or a file path")
        if self.path is not None and "weights" in self.model_fields_set:
            raise ValueError("'weights' goes with 'keras'; a 'path' model's file is its weights")
        return self


class ReportConfig(_Strict):
    """The whole report: title, output folder, formats and models."""

    title: str
    output: str = "reports/report"
    formats: list[Format] = Field(default_factory=lambda: list(FORMATS))
    description: str | None = None
    models: list[ModelConfig] = Field(min_length=1)
    bins: int = Field(default=60, ge=5, le=1000)
    spectral: bool = True
    spectral_layers: list[str] | None = Field(
        default=None, min_length=1, description="layer-name patterns (shell-style) whose kernels get spectra"
    )
    spectral_fit: SpectralFit = "csn"
    compare_to: str | None = None
    pdf: Literal["brief", "full"] = Field(
        default="brief", description="brief: the answer and the story; full: also every table, for the archive"
    )
    executor: ExecutorKind | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> ReportConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self


@dataclass(frozen=True)
class ModelEntry:
    """One model of a config as validation resolved it, once, for the pipeline, the executor and workers.

    Its weights are at exactly one of path, hf, memory_key or (a Keras application) weights; the
    where* strings are the 'file:line: key' that start every error about the model.
    """

    index: int
    config: ModelConfig
    init_plan: InitPlan
    where: str  # models[i]
    where_source: str  # the key that names the weights: models[i].path, or models[i].keras
    where_weights: str  # models[i].weights, for Keras applications
    where_overrides: tuple[str, ...]  # models[i].init_overrides[j].layers
    path: Path | None = None  # a local file or folder: relative to the config's folder, pkg: found
    hf: str | None = None  # hf:ORG/NAME: fetched when the build opens it, as that may download
    memory_key: str | None = None  # memory:KEY, a model handed to the Python API
    weights: Path | str | None = None  # Keras application: None (random init), 'imagenet' or its weights file

    @property
    def name(self) -> str:
        """Return the model's name from the config."""
        return self.config.name


class LoadedConfig:
    """A validated config with the file it came from and each model's paths and initializers resolved."""

    def __init__(
        self, config: ReportConfig, path: Path, text: str, lines: dict[tuple[Any, ...], int] | None = None
    ) -> None:
        self.config = config
        self.path = path
        self.text = text
        self.lines = lines or {}
        self._resolved: dict[str, Path] = {}
        entries: list[ModelEntry] = []
        problems: list[str] = []
        for i, mc in enumerate(config.models):
            try:
                entries.append(self._entry(i, mc))
            except ConfigError as exc:
                problems.extend(exc.messages)
        if problems:
            raise ConfigError(problems)
        self.models = tuple(entries)

    def _entry(self, index: int, mc: ModelConfig) -> ModelEntry:
        """Resolve one model entry: its weights' location, its initializer plan, its error locations."""
        at = ("models", index)
        found: dict[str, Any] = {}
        if mc.keras is not None:
            weights = mc.weights
            local = weights not in (None, "imagenet") and not str(weights).startswith("hf:")
            found["weights"] = self.resolve(str(weights)) if local else weights
        elif mc.path is not None and mc.path.startswith(MEMORY_PREFIX):
            found["memory_key"] = mc.path[len(MEMORY_PREFIX) :]
        elif mc.path is not None and mc.path.startswith("hf:"):
            found["hf"] = mc.path
        elif mc.path is not None:
            found["path"] = self.resolve(mc.path)
        return ModelEntry(
            index=index,
            config=mc,
            init_plan=mc.init_plan(),
            where=self.where(*at),
            where_source=self.where(*at, "keras" if mc.keras is not None else "path"),
            where_weights=self.where(*at, "weights"),
            where_overrides=tuple(
                self.where(*at, "init_overrides", j, "layers") for j in range(len(mc.init_overrides))
            ),
            **found,
        )

    def where(self, *loc: Any) -> str:
        """Return 'file:line: key.path' for a location in the config, for error messages."""
        probe = tuple(loc)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = f":{self.lines.get(probe, 1)}" if self.lines else ""  # a config given as a dict has no lines
        return f"{self.path}{line}: {_format_loc(tuple(loc))}"

    def resolve(self, value: str) -> Path:
        """Resolve a path from the config: relative to the config file, pkg:NAME/inside/package, or hf:ORG/NAME."""
        if value.startswith("pkg:"):
            return resolve_package_path(value[4:], self.path)
        if value.startswith("hf:"):
            if value not in self._resolved:  # once per build: it may download
                from reportgen.sources.hf import resolve_hf

                self._resolved[value] = resolve_hf(value)
            return self._resolved[value]
        if value.startswith(MEMORY_PREFIX):
            raise ConfigError(f"{self.path}: {value!r} names an in-memory model; only the Python API can pass one")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)

    def output_dir(self, override: str | None = None) -> Path:
        """Return the output folder: relative to the current directory, as make users expect."""
        return Path(override or self.config.output)


def resolve_package_path(spec: str, config_path: Path) -> Path:
    """Find a file inside an installed package without importing (running) any of its code."""
    package, _, inner = spec.partition("/")
    parts = package.split(".")
    where = f"{config_path}: package {package!r}"
    if not all(p.isidentifier() for p in parts):
        raise ConfigError(f"{where} is not a Python package name (from 'pkg:{spec}')")
    if Path(inner).is_absolute() or ".." in Path(inner).parts:
        raise ConfigError(f"{where}: the path inside must stay inside the package (from 'pkg:{spec}')")
    folder = _package_folder(parts)
    if folder is None:
        raise ConfigError(f"{where} is not installed (from 'pkg:{spec}')")
    return folder / inner


def _package_folder(parts: list[str]) -> Path | None:
    """Return a package's folder from sys.path entries or installed files' records, importing nothing.

    importlib.util.find_spec('a.b') imports 'a' (runs its __init__) to read its __path__; looking at
    folders and at the RECORD files of installed distributions reads data only.
    """
    for entry in sys.path:
        folder = Path(entry or ".").joinpath(*parts)
        try:
            if folder.is_dir():
                return folder
        except OSError:
            continue
    want = tuple(parts)
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if tuple(file.parts[: len(want)]) == want and len(file.parts) > len(want):
                return Path(str(dist.locate_file(Path(*want))))
    return None


# ---------------------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """A safe loader for plain data: no anchors, aliases, tags, complex keys or deep nesting.

    Dates are left as text: a config holds no timestamps, and an impossible one (2001-13-45) would
    fail inside the constructor instead of as a schema error.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    depth = 0


class _Refused(yaml.MarkedYAMLError):
    """A YAML feature a config may not use."""


def _compose_node(self: _LineLoader, parent: Any, index: Any) -> Any:
    event = self.peek_event()
    if isinstance(event, yaml.AliasEvent):
        raise _Refused(None, None, "aliases are not allowed", event.start_mark)
    if getattr(event, "anchor", None):
        raise _Refused(None, None, "anchors are not allowed", event.start_mark)
    tag = getattr(event, "tag", None)
    if tag is not None and tag != "!":
        raise _Refused(None, None, f"tags are not allowed ({printable(tag)})", event.start_mark)
    # index None: this node is a mapping key; only plain values (text, numbers) may be keys.
    if isinstance(parent, yaml.MappingNode) and index is None and not isinstance(event, yaml.ScalarEvent):
        raise _Refused(None, None, "keys must be plain text, not lists or mappings", event.start_mark)
    self.depth += 1
    try:
        if self.depth > MAX_YAML_DEPTH:
            raise _Refused(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        return yaml.SafeLoader.compose_node(self, parent, index)
    finally:
        self.depth -= 1


_LineLoader.compose_node = _compose_node  # type: ignore[method-assign,assignment]


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _line_map(value, (*path, k), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), out)


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _fields_of(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Return the field names allowed at the mapping that holds loc's last key."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        nxt = None
        for a in inner:
            if issubclass(a, BaseModel):
                nxt = a
            for sub in getattr(a, "__args__", ()):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    nxt = sub
        if nxt is None:
            args = getattr(ann, "__args__", ())
            for a in args:
                for sub in getattr(a, "__args__", ()):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        nxt = sub
        if nxt is None:
            return []
        current = nxt
    return list(current.model_fields)


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        if loc == ("scheduler",):
            return SCHEDULER_REFUSED
        near = difflib.get_close_matches(str(key), _fields_of(ReportConfig, loc), n=1, cutoff=0.6)
        return f"unknown key {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_config(text: str, path: Path) -> LoadedConfig:
    """Validate config text; raise ConfigError listing every problem with file:line: key path."""
    loader = None
    try:
        loader = _LineLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{path}{where}: YAML syntax error: {printable(problem, 120)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {printable(str(exc).splitlines()[0], 120)}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A value the safe constructors cannot build, e.g. an integer of more than 4300 digits.
        raise ConfigError(f"{path}: invalid YAML value ({type(exc).__name__})") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise ConfigError(f"{path}: the config is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys (title, output, models, ...)")
    lines: dict[tuple[Any, ...], int] = {}
    _line_map(node, (), lines)
    try:
        config = ReportConfig.model_validate(data)
    except ValidationError as exc:
        messages: list[tuple[int, str]] = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            probe = loc
            while probe and probe not in lines:
                probe = probe[:-1]
            line = lines.get(probe, 1)
            messages.append((line, f"{path}:{line}: {_format_loc(loc)}: {_message(err, loc)}"))
        raise ConfigError([m for _, m in sorted(messages, key=lambda m: m[0])]) from None
    return LoadedConfig(config, path, text, lines)


# A config is refused as a source file is (one implementation), but as a config error, exit code 3.
_CONFIG_FILE = PathWords(ConfigError, "config file", "cannot read the config", "cannot read the config")


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; a FIFO, device or socket is refused before it is opened."""
    p = Path(path)
    name = printable(str(p), 300)
    st = check_path(p, words=_CONFIG_FILE)
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{name}: is a folder, not a config file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: config is {st.st_size} bytes; the limit is {MAX_CONFIG_BYTES}")
    # The open refuses a path swapped for a FIFO since the check without waiting on it.
    with os.fdopen(open_regular(p, words=_CONFIG_FILE), "rb") as fh:
        try:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read the config ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: config is larger than the limit of {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return parse_config(text, p)


def config_from_mapping(data: Any, label: str = "<dict>") -> LoadedConfig:
    """Validate a config given as a Python mapping; errors name the key path, as there are no lines."""
    import json

    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the config must be a mapping of keys (title, output, models, ...)")
    try:
        config = ReportConfig.model_validate(data)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            messages.append(f"{label}: {_format_loc(loc)}: {_message(err, loc)}")
        raise ConfigError(messages) from None
    # The hash in the report covers the config as data; relative paths resolve from the current folder.
    text = json.dumps(data, sort_keys=True, default=repr)
    return LoadedConfig(config, Path(label), text)
