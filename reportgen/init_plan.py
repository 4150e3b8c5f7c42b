"""Decide which initializer each tensor started from: file, per-layer overrides, `init:`, framework defaults."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.sources.base import (
    InitSpec,
    LayerInfo,
    LayerView,
    SourceInfo,
    TensorRef,
    WeightSource,
)
from reportgen.sources.formats import framework_of
from reportgen.sources.memory import PRELU

# Roles an override may name; `kernel` also covers depthwise/pointwise kernels unless they are named.
OVERRIDE_ROLES = (
    "kernel",
    "bias",
    "gamma",
    "beta",
    "embedding",
    "recurrent_kernel",
    "depthwise_kernel",
    "pointwise_kernel",
)
_KERNEL_LIKE = ("kernel", "depthwise_kernel", "pointwise_kernel")
# Named initializers a config may give as a plain string.
NAMED = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "pytorch_default",
    "zeros",
    "ones",
)
# Mapping forms: {constant: 0.2}, {normal: {std: 0.02}}, {uniform: 0.05}, ... -> (kind, {config key: spec param}).
_MAPPED: dict[str, tuple[str, dict[str, str]]] = {
    "constant": ("constant", {"value": "value"}),
    "normal": ("random_normal", {"std": "stddev", "mean": "mean"}),
    "truncated_normal": ("truncated_normal", {"std": "stddev", "mean": "mean"}),
    "uniform": ("random_uniform", {"min": "minval", "max": "maxval"}),
    "orthogonal": ("orthogonal", {"gain": "gain"}),
    "variance_scaling": ("variance_scaling", {"scale": "scale", "mode": "mode", "distribution": "distribution"}),
}
# Torch RNN parameters (nn.LSTM weight_ih_l0, nn.LSTMCell weight_ih): all drawn from U(+-1/sqrt(hidden)).
_TORCH_RNN = re.compile(r"^(weight|bias)_(ih|hh)(_l\d+)?(_reverse)?$")
_SHOWN = {"pytorch": "PyTorch", "keras": "Keras", "transformers": "Hugging Face transformers"}


def parse_spec(value: Any, origin: str = "config") -> InitSpec:
    """Turn a config value ('zeros', {constant: 0.2}, {normal: {std: 0.02}}) into an InitSpec; ValueError if bad."""
    if isinstance(value, str):
        if value not in NAMED:
            raise ValueError(
                f"unknown initializer {value!r}; known: {', '.join(NAMED)}, or a mapping such as "
                "{constant: 0.2}, {normal: {std: 0.02}}, {uniform: {min: -0.05, max: 0.05}}"
            )
        return InitSpec(kind=value, origin=origin)
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(
            "an initializer is a name (zeros, glorot_uniform, ...) or a mapping with one key, "
            "e.g. {constant: 0.2} or {normal: {std: 0.02}}"
        )
    ((name, arg),) = value.items()
    if name not in _MAPPED:
        raise ValueError(f"unknown initializer {name!r}; mappings take one of {', '.join(_MAPPED)}")
    kind, keys = _MAPPED[name]
    if not isinstance(arg, dict):
        # Shorthand: {constant: 0.2}, {normal: 0.02} (std), {uniform: 0.05} (symmetric bound).
        if not isinstance(arg, int | float) or isinstance(arg, bool):
            raise ValueError(f"{name}: expected a number or a mapping of {', '.join(keys)}")
        arg = (
            {"value": arg}
            if name == "constant"
            else {"min": -arg, "max": arg}
            if name == "uniform"
            else {"std": arg}
            if name in ("normal", "truncated_normal")
            else {"gain": arg}
            if name == "orthogonal"
            else None
        )
        if arg is None:
            raise ValueError(f"{name}: expected a mapping of {', '.join(keys)}")
    unknown = sorted(set(arg) - set(keys))
    if unknown:
        raise ValueError(f"{name}: unknown parameter {unknown[0]!r}; known: {', '.join(keys)}")
    params: list[tuple[str, Any]] = []
    for key, val in arg.items():
        if key in ("mode", "distribution"):
            params.append((keys[key], str(val)))
        elif isinstance(val, int | float) and not isinstance(val, bool) and math.isfinite(val):
            params.append((keys[key], float(val)))
        else:
            raise ValueError(f"{name}.{key}: expected a finite number, got {val!r}")
    if kind in ("random_normal", "truncated_normal") and not float(dict(params).get("stddev", 1.0)) > 0:
        raise ValueError(f"{name}.std must be > 0")
    return InitSpec(kind=kind, params=tuple(sorted(params)), origin=origin)


def describe_spec(spec: InitSpec) -> str:
    """Return a spec as a config would write it: 'zeros', 'constant 0.2', 'random_normal stddev=0.02'."""
    if not spec.params:
        return spec.kind
    if spec.kind == "constant":
        return f"constant {spec.param('value', 0.0):g}"
    return spec.kind + " " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.params)


@dataclass(frozen=True)
class InitRule:
    """Initializers for the tensors of layers matched by name or glob."""

    patterns: tuple[str, ...]
    specs: tuple[tuple[str, InitSpec], ...]  # (role, spec)

    def matches(self, layer: LayerInfo) -> bool:
        """Tell whether the layer's name (or the last part of a nested name) matches a pattern."""
        names = {layer.name, layer.name.rsplit("/", 1)[-1], layer.path}
        return any(fnmatch.fnmatchcase(n, p) for p in self.patterns for n in names if n)

    def spec_for(self, role: str) -> InitSpec | None:
        """Return the rule's spec for a role; kernel covers depthwise and pointwise kernels too."""
        given = dict(self.specs)
        if role in given:
            return given[role]
        return given.get("kernel") if role in _KERNEL_LIKE else None


@dataclass(frozen=True)
class InitPlan:
    """What a config says about initializers: one for the whole model and per-layer rules."""

    default: InitSpec | None = None
    rules: tuple[InitRule, ...] = ()


@dataclass(frozen=True)
class Framework:
    """The framework whose default initializers apply, and what in the file says so."""

    name: str  # pytorch | keras | transformers
    evidence: str
    weight: InitSpec  # what Linear / Conv weights start from


def detect_framework(info: SourceInfo, layers: list[LayerInfo], path: Path | None) -> Framework | None:
    """Name the framework the weights come from where the file leaves no doubt; None otherwise."""
    fmt = info.format
    implied = framework_of(fmt)
    if implied == "pytorch":
        return Framework("pytorch", "a PyTorch checkpoint", InitSpec("pytorch_default", origin="framework-default"))
    if implied == "keras":
        return Framework("keras", "a Keras file", InitSpec("glorot_uniform", origin="framework-default"))
    if fmt == "onnx":
        producer = info.extra.get("producer", "").lower()
        if producer.startswith("pytorch"):
            spec = InitSpec("pytorch_default", origin="framework-default")
            return Framework("pytorch", f"ONNX exported by {info.extra['producer']}", spec)
        if producer.startswith(("tf2onnx", "keras2onnx")):
            spec = InitSpec("glorot_uniform", origin="framework-default")
            return Framework("keras", f"ONNX exported by {info.extra['producer']}", spec)
        return None
    if fmt != "safetensors":
        return None
    refs = [p for layer in layers for p in layer.params]
    if not refs or not all(p.layout == "torch" for p in refs if len(p.shape) >= 2):
        return None
    if not any(p.key.endswith(".weight") for p in refs):
        return None
    hf = _transformers_config(path)
    if hf is not None:
        std, name = hf
        spec = InitSpec("random_normal", (("stddev", std),), origin="framework-default")
        return Framework("transformers", f"{name} beside the weights gives initializer_range {std:g}", spec)
    return Framework(
        "pytorch",
        "PyTorch tensor names (.weight, .bias) and (out, in) layouts",
        InitSpec("pytorch_default", origin="framework-default"),
    )


def _transformers_config(path: Path | None) -> tuple[float, str] | None:
    """Return (initializer_range, file name) from a Hugging Face config.json beside the weights."""
    if path is None:
        return None
    folder = path if path.is_dir() else path.parent
    cfg = folder / "config.json"
    try:
        if not cfg.is_file() or cfg.stat().st_size > 1 << 20:
            return None
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    std = data.get("initializer_range") if isinstance(data, dict) else None
    if isinstance(std, int | float) and not isinstance(std, bool) and 0 < std < 1:
        return float(std), cfg.name
    return None


def _rnn_bound(layer: LayerInfo) -> float | None:
    """Return PyTorch's RNN init bound 1/sqrt(hidden) from the layer's weight_hh, if it has one."""
    for p in layer.params:
        m = _TORCH_RNN.match(p.name)
        if m and m.group(1) == "weight" and m.group(2) == "hh" and len(p.shape) == 2 and p.shape[1] > 0:
            return 1.0 / math.sqrt(p.shape[1])
    return None


def _default_for(layer: LayerInfo, ref: TensorRef, weight: InitSpec) -> InitSpec | None:
    """Return the initializer a framework whose weights start from `weight` gives this tensor."""
    origin = weight.origin
    torch_like = weight.kind == "pytorch_default"
    if ref.role == "gamma":
        return InitSpec("ones", origin=origin)
    if ref.role == "beta":
        return InitSpec("zeros", origin=origin)
    if ref.role in ("moving_mean", "moving_variance") or not ref.trainable:
        return None
    if layer.class_name == "PReLU" and ref.name in ("weight", "alpha"):
        # nn.PReLU starts every slope at 0.25; Keras's PReLU at zeros.
        if torch_like:
            return dataclasses.replace(PRELU, origin=origin)
        return InitSpec("zeros", origin=origin)
    if torch_like and _TORCH_RNN.match(ref.name):
        bound = _rnn_bound(layer)
        if bound is None:
            return None
        return InitSpec("random_uniform", (("maxval", bound), ("minval", -bound)), origin=origin)
    if ref.role in (*_KERNEL_LIKE, "recurrent_kernel"):
        if ref.role == "recurrent_kernel" and not torch_like:
            return InitSpec("orthogonal", origin=origin)
        return weight
    if ref.role == "embedding":
        if torch_like:
            return InitSpec("random_normal", (("stddev", 1.0),), origin=origin)  # nn.Embedding: N(0, 1)
        if weight.kind == "random_normal":
            return weight
        return InitSpec("random_uniform", (("maxval", 0.05), ("minval", -0.05)), origin=origin)
    if ref.role == "bias":
        if torch_like:
            return weight if layer.param("kernel") is not None else None
        if layer.class_name == "LSTM" and ref.size % 4 == 0:
            return InitSpec("keras_lstm_bias", origin=origin)
        return InitSpec("zeros", origin=origin)
    return None


def plan_layers(
    layers: list[LayerInfo], plan: InitPlan, framework: Framework | None
) -> tuple[list[LayerInfo], tuple[int, ...], int]:
    """Give every trainable tensor its initializer.

    Return the layers, how many layers each rule matched, and how many tensors got a default.
    """
    weight = plan.default or (framework.weight if framework else None)
    hits = [0] * len(plan.rules)
    defaulted = 0
    out = []
    for layer in layers:
        rules = [i for i, r in enumerate(plan.rules) if r.matches(layer)]
        for i in rules:
            hits[i] += 1
        params = []
        for ref in layer.params:
            spec = next((s for i in rules if (s := plan.rules[i].spec_for(ref.role)) is not None), None)
            if spec is None and ref.init is None and weight is not None:
                spec = _default_for(layer, ref, weight)
                defaulted += spec is not None
            elif spec is None and ref.init is not None and ref.init.kind == "zeros" and layer.class_name == "LSTM":
                # Keras LSTM records bias_initializer zeros, but unit_forget_bias (on by default) sets the
                # forget gate's quarter to ones.
                spec = InitSpec("keras_lstm_bias", origin=ref.init.origin) if ref.role == "bias" else None
            params.append(dataclasses.replace(ref, init=spec) if spec is not None else ref)
        out.append(dataclasses.replace(layer, params=tuple(params)))
    return out, tuple(hits), defaulted


def plan_note(plan: InitPlan, framework: Framework | None, defaulted: int = 1) -> str:
    """Say in one line where the initializers come from, for the report's overview."""
    parts = []
    if not defaulted:
        framework = None  # the file recorded every initializer: nothing was assumed
    if plan.default is not None:
        parts.append(f"initializer stated in config: {describe_spec(plan.default)}")
        if plan.default.kind == "pytorch_default":
            parts[-1] += " (PyTorch defaults for biases and norms too)"
    elif framework is not None:
        parts.append(
            f"{_SHOWN.get(framework.name, framework.name)} default initializers assumed for {defaulted} tensors "
            f"({framework.evidence}): "
            f"{describe_spec(framework.weight)} weights, default biases, ones/zeros for norms"
        )
    for rule in plan.rules:
        what = ", ".join(f"{role} {describe_spec(s)}" for role, s in rule.specs)
        parts.append(f"{' | '.join(rule.patterns)}: {what}")
    return "; ".join(parts)


class PlannedSource(LayerView):
    """Wrap a source so its tensors carry the initializers a plan and the framework's defaults give them."""

    def __init__(self, inner: WeightSource, plan: InitPlan, path: Path | None = None) -> None:
        self.inner = inner
        self.path = path  # the local file or folder the config resolved, which workers reopen; None in memory
        layers = inner.layers()
        self.framework = detect_framework(inner.info, layers, path)
        self._layers, self.rule_hits, defaulted = plan_layers(layers, plan, self.framework)
        self.note = plan_note(plan, self.framework, defaulted)
        self.info = inner.info
