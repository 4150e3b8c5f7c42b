"""Group flat tensor names (encoder.layer.0.query.weight) into layers, parameter roles and layer types."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reportgen.sources.base import LayerInfo, TensorRef
from reportgen.vocab import ROLES

# Parameter names whose role does not depend on the layer around them.
_FIXED_ROLES = {
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
    "num_batches_tracked": "other",
    "gamma": "gamma",
    "beta": "beta",
    # Keras / Flax names, for files written from those frameworks.
    "kernel": "kernel",
    "recurrent_kernel": "recurrent_kernel",
    "depthwise_kernel": "depthwise_kernel",
    "pointwise_kernel": "pointwise_kernel",
    "embeddings": "embedding",
    "embedding": "embedding",
}

# A layer whose last name part is a norm: LayerNorm, layer_norm, input_layernorm, norm1, ln_f, ln_1, bn1.
_NORM_PART = re.compile(r"norm|^(ln|bn|gn)(_?[a-z0-9]+)?$", re.IGNORECASE)
# Recurrent parameters as torch.nn.LSTM/GRU/RNN name them (weight_ih_l0, bias_hh_l1_reverse, ...)
# and as their cells do (weight_ih, bias_hh).
_RNN_PARAM = re.compile(r"^(weight|bias)_(ih|hh)(_l\d+)?(_reverse)?$")
# Registered buffers: state that a module keeps beside its parameters and that no optimizer updates.
_BUFFER_NAMES = {
    "running_mean",
    "running_var",
    "num_batches_tracked",
    "moving_mean",
    "moving_variance",
    "position_ids",
    "token_type_ids",
    "inv_freq",
    "masked_bias",
    "relative_position_index",
    "attn_mask",
    "mask",
    # Quantization parameters: derived from the weight they scale, not trained.
    "weight_scale",
    "weight_zero_point",
    "zero_point",
    "input_scale",
}
# A sibling that marks an integer weight as quantized (its codes hold learned values).
_SCALE_SIBLINGS = {"weight_scale", "scale"}
# Roles that name running statistics rather than learned values.
_BUFFER_ROLES = {"moving_mean", "moving_variance"}
# GPT-2 names its token and position tables wte / wpe.
_EMBED_PARTS = {"wte", "wpe"}
_RNN_GATES = {4: "LSTM", 3: "GRU", 1: "RNN"}


@dataclass(frozen=True)
class FlatTensor:
    """One tensor of a flat name->tensor file, before it is grouped into a layer."""

    key: str  # the name in the file, used again to read the tensor
    shape: tuple[int, ...]
    dtype: str
    quant: tuple[tuple[str, float], ...] = ()
    layer: str | None = None  # the layer it belongs to, when the file says better than the name
    param: str | None = None  # its name inside that layer, likewise
    role: str | None = None  # its role, when the file declares it (an ONNX operator input)
    layout: str | None = None  # its layout, when it differs from the source's default
    trainable: bool | None = None  # what the file says (an ONNX graph constant is not); None: judge by name


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts layer.9 before layer.10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def split_name(key: str) -> tuple[str, str]:
    """Split 'encoder.layer.0.query.weight' into ('encoder.layer.0.query', 'weight')."""
    layer, dot, param = key.rpartition(".")
    if not dot or not layer or not param:
        # A top-level tensor (cls_token, pos_embed) is its own layer.
        return key, key
    return layer, param


def _last_part(layer: str) -> str:
    return layer.rpartition(".")[2]


def is_norm_name(layer: str) -> bool:
    """Tell whether a layer's name marks it as a normalisation layer."""
    return bool(_NORM_PART.search(_last_part(layer)))


def is_embedding_name(layer: str, param: str) -> bool:
    """Tell whether a tensor's name marks it as an embedding table."""
    return "embed" in f"{layer}.{param}".lower() or _last_part(layer).lower() in _EMBED_PARTS


def is_numeric_weight_dtype(dtype: str) -> bool:
    """Tell whether a dtype can hold learned values: floats, and integers that a scale makes real."""
    return dtype.startswith(("float", "bfloat", "complex"))


def is_buffer(param: str, role: str, shape: tuple[int, ...], dtype: str, quantized: bool = False) -> bool:
    """Tell whether a tensor is state that training does not update (a buffer, an index vector, a mask)."""
    if role in _BUFFER_ROLES or param in _BUFFER_NAMES or "buffer" in param.lower():
        return True
    # A quantized integer weight (one with a scale beside it) still holds learned values.
    if not is_numeric_weight_dtype(dtype) and not quantized:
        return True
    # GPT-2 style checkpoints keep the causal mask as attn.bias of shape (1, 1, n, n): no bias has 4 axes.
    return param == "bias" and len(shape) >= 3


def param_role(layer: str, param: str, shape: tuple[int, ...], siblings: Iterable[str]) -> str:
    """Return the canonical role of one parameter, given the names of the others in its layer."""
    if param in _FIXED_ROLES:
        return _FIXED_ROLES[param]
    sibs = siblings if isinstance(siblings, frozenset | set) else set(siblings)
    rnn = _RNN_PARAM.match(param)
    if rnn:
        if rnn.group(1) == "bias":
            return "bias"
        return "recurrent_kernel" if rnn.group(2) == "hh" else "kernel"
    has_running = {"running_mean", "running_var"} & sibs
    if param in ("weight", "bias") and len(shape) <= 1 and (has_running or is_norm_name(layer)):
        return "gamma" if param == "weight" else "beta"
    if param == "bias":
        return "bias"
    if len(shape) == 2 and is_embedding_name(layer, param):
        return "embedding"
    if param == "weight" and len(shape) >= 2:
        return "kernel"
    return "other"


def infer_class(layer: str, params: Mapping[str, tuple[int, ...]], roles: Mapping[str, str]) -> str:
    """Guess a torch-style layer type (Linear, Conv2d, BatchNorm, ...) from its parameters."""
    if "running_mean" in params or "running_var" in params:
        return "BatchNorm"
    hh = [shape for name, shape in params.items() if roles.get(name) == "recurrent_kernel"]
    if hh and len(hh[0]) == 2 and hh[0][1] > 0 and hh[0][0] % hh[0][1] == 0:
        return _RNN_GATES.get(hh[0][0] // hh[0][1], "RNN")
    if "embedding" in roles.values():
        return "Embedding"
    kernel = params.get("kernel")
    if kernel is not None and roles.get("kernel") == "kernel":
        if len(kernel) == 2:
            return "Dense"
        if len(kernel) in (3, 4, 5):
            return f"Conv{len(kernel) - 2}D"
    weight = params.get("weight")
    if weight is not None:
        if roles.get("weight") == "gamma":
            part = _last_part(layer).lower()
            if part.startswith("bn") or "batch" in part:
                return "BatchNorm"
            if "rms" in part:
                return "RMSNorm"
            if part.startswith("gn") or "group" in part:
                return "GroupNorm"
            return "LayerNorm"
        if len(weight) <= 1 and "prelu" in _last_part(layer).lower():
            return "PReLU"
        if len(weight) == 2:
            return "Linear"
        if len(weight) in (3, 4, 5):
            return f"Conv{len(weight) - 2}d"
    if "gamma" in params and "beta" in params:
        return "LayerNorm"
    return "Unknown"


QUANT_NAMES = {
    "weight_scale": "scale",
    "scale": "scale",
    "weight_zero_point": "zero_point",
    "zero_point": "zero_point",
}


def quant_groups(tensors: Iterable[FlatTensor], quantized: Callable[[str], bool]) -> dict[str, list[tuple[str, str]]]:
    """Map each quantized weight's key to [(quant field, key of a scalar tensor beside it)].

    quantized(dtype) says whether a dtype holds quantized values (int8, float8, ...).
    """
    by_key = {t.key: t for t in tensors}
    out: dict[str, list[tuple[str, str]]] = {}
    for t in by_key.values():
        layer, param = split_name(t.key)
        if param != "weight" or layer == t.key or not quantized(t.dtype):
            continue
        for qname, field in QUANT_NAMES.items():
            side = by_key.get(f"{layer}.{qname}")
            have = [f for f, _ in out.get(t.key, [])]
            if side is not None and math.prod(side.shape) == 1 and field not in have:
                out.setdefault(t.key, []).append((field, side.key))
    return out


def _role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def group_layers(
    tensors: Iterable[FlatTensor],
    *,
    layout: str = "torch",
    order: str = "natural",
    class_names: Mapping[str, str] | None = None,
    feeds: Mapping[str, tuple[str, ...]] | None = None,
) -> list[LayerInfo]:
    """Group tensors into layers; order is 'natural' (layer.9 before layer.10) or 'appearance'.

    class_names gives a layer type the file declares (an ONNX op_type); other types are inferred.
    """
    groups: dict[str, list[tuple[str, FlatTensor]]] = {}
    for t in tensors:
        layer, param = split_name(t.key)
        layer = t.layer if t.layer is not None else layer
        param = t.param if t.param is not None else param
        groups.setdefault(layer, []).append((param, t))
    names = list(groups)
    if order == "natural":
        names.sort(key=natural_key)
    elif order != "appearance":
        raise ValueError(f"unknown layer order {order!r}")
    declared = class_names or {}
    out: list[LayerInfo] = []
    for index, name in enumerate(names):
        members = groups[name]
        siblings = frozenset(param for param, _ in members)  # built once: a layer may hold 100,000 tensors
        refs = []
        for param, t in members:
            role = t.role or param_role(name, param, t.shape, siblings)
            if t.trainable is None:
                quantized = bool(t.quant) or (param == "weight" and bool(_SCALE_SIBLINGS & siblings))
                trainable = not is_buffer(param, role, t.shape, t.dtype, quantized=quantized)
            else:
                trainable = t.trainable
            refs.append(
                TensorRef(
                    key=t.key,
                    name=param,
                    role=role,
                    shape=t.shape,
                    dtype=t.dtype,
                    layout=t.layout or layout,
                    quant=t.quant,
                    trainable=trainable,
                )
            )
        # Stable sort: kernel before bias, gamma before beta, file order among equals.
        refs.sort(key=lambda r: _role_rank(r.role))
        if name in declared:
            class_name, type_source = declared[name], "config"
        else:
            shapes = {r.name: r.shape for r in refs}
            class_name = infer_class(name, shapes, {r.name: r.role for r in refs})
            type_source = "inferred"
        out.append(
            LayerInfo(
                name=name,
                class_name=class_name,
                index=index,
                params=tuple(refs),
                type_source=type_source,
                path=name.replace(".", "/"),
                feeds=tuple((feeds or {}).get(name, ())),
            )
        )
    return out
