"""Read a Keras model config as plain JSON data: layer classes, variable names, initializers and the layer graph."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reportgen.sources.base import InitSpec, LayerInfo
from reportgen.sources.keras_init import snake_case, spec_from_keras

# Variables each layer class creates, in creation order (the order of Keras 3's vars/0..n).
_VAR_NAMES: dict[str, tuple[str, ...]] = {
    **{c: ("kernel", "bias") for c in ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D")},
    **{c: ("kernel", "bias") for c in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")},
    "DepthwiseConv1D": ("depthwise_kernel", "bias"),
    "DepthwiseConv2D": ("depthwise_kernel", "bias"),
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "Embedding": ("embeddings",),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LayerNormalization": ("gamma", "beta"),
    "GroupNormalization": ("gamma", "beta"),
    **{c: ("kernel", "recurrent_kernel", "bias") for c in ("SimpleRNNCell", "LSTMCell", "GRUCell")},
}
_RNN_LAYERS = {"SimpleRNN": "SimpleRNNCell", "LSTM": "LSTMCell", "GRU": "GRUCell"}
# Layers that hold another layer and save its variables under their own name.
_WRAPPERS = ("Bidirectional", "TimeDistributed")
_ROLE_OF = {"embeddings": "embedding", "weight": "kernel"}
_INIT_KEY = {
    "recurrent_kernel": "recurrent_initializer",
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
}
_ATTR_KEYS = ("use_bias", "activation", "filters", "units", "kernel_size", "strides", "padding", "groups")
_CONTAINERS = ("Sequential", "Functional", "Model")


def role_of(name: str) -> str:
    """Map a Keras variable name onto a canonical role."""
    from reportgen.vocab import ROLES

    base = name.rsplit("/", 1)[-1].split(":")[0]
    base = _ROLE_OF.get(base, base)
    return base if base in ROLES else "other"


def infer_class(shapes: list[tuple[int, ...]]) -> str:
    """Guess a layer class from its variable shapes; 'Unknown' when nothing fits."""
    if len(shapes) in (1, 2) and len(shapes[0]) in (2, 3, 4, 5):
        if len(shapes) == 2 and (len(shapes[1]) != 1 or shapes[1][0] != shapes[0][-1]):
            return "Unknown"
        return {2: "Dense", 3: "Conv1D", 4: "Conv2D", 5: "Conv3D"}[len(shapes[0])]
    if len(shapes) == 4 and all(len(s) == 1 for s in shapes) and len(set(shapes)) == 1:
        return "BatchNormalization"
    if len(shapes) == 3 and len(shapes[0]) == 2 and len(shapes[1]) == 2 and shapes[0][1] == shapes[1][1]:
        # kernel (in, g*u), recurrent_kernel (u, g*u), bias (g*u,) or (2, g*u): g gates of u units.
        units, width = shapes[1]
        cell = {4: "LSTMCell", 3: "GRUCell", 1: "SimpleRNNCell"}.get(width // units if units else 0)
        if cell is not None and width % units == 0 and shapes[2][-1:] == (width,):
            return cell
    return "Unknown"


def class_from_names(names: list[str], shapes: list[tuple[int, ...]]) -> str:
    """Guess a layer class from its variables' own names (a SavedModel's), 'Unknown' when nothing fits."""
    have = set(names)
    if {"moving_mean", "moving_variance"} <= have:
        return "BatchNormalization"
    if "recurrent_kernel" in have and "kernel" in have:
        kernel, recurrent = shapes[names.index("kernel")], shapes[names.index("recurrent_kernel")]
        units = recurrent[0] if len(recurrent) == 2 else 0
        gates = kernel[-1] // units if units and len(kernel) == 2 else 0
        return {4: "LSTMCell", 3: "GRUCell", 1: "SimpleRNNCell"}.get(gates, "Unknown")
    if "pointwise_kernel" in have:
        return "SeparableConv2D" if len(shapes[names.index("pointwise_kernel")]) == 4 else "SeparableConv1D"
    if "depthwise_kernel" in have:
        return "DepthwiseConv2D" if len(shapes[names.index("depthwise_kernel")]) == 4 else "DepthwiseConv1D"
    if have == {"embeddings"}:
        return "Embedding"
    if names[:1] == ["kernel"]:
        return infer_class(shapes)
    if have == {"gamma", "beta"} or have == {"gamma"}:
        return "LayerNormalization"
    return "Unknown"


def var_names(class_name: str, config: dict[str, Any], count: int) -> tuple[str, ...] | None:
    """Return the variable names a layer of this class and config holds, if they number count."""
    names = _VAR_NAMES.get(class_name)
    if names is None:
        return None
    if class_name in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        keep = {"gamma": config.get("scale", True), "beta": config.get("center", True)}
        names = tuple(n for n in names if keep.get(n, True))
    elif "bias" in names and config.get("use_bias", True) is False:
        names = tuple(n for n in names if n != "bias")
    return names if len(names) == count else None


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("class_name", value))
    return value


def layer_attrs(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Pick the layer config values a report shows."""
    return tuple((k, _hashable(config[k])) for k in _ATTR_KEYS if k in config)


def initializer_key(name: str) -> str:
    """Return the layer config key of a Keras variable's initializer (kernel -> kernel_initializer)."""
    return _INIT_KEY.get(name, f"{name}_initializer")


def _init_for(name: str, config: dict[str, Any]) -> Any:
    key = initializer_key(name)
    return spec_from_keras(config.get(key)) if key in config else None


def _inner(config: dict[str, Any], backward: bool) -> tuple[str, dict[str, Any]]:
    """Return the class and config a wrapper (Bidirectional, TimeDistributed) holds; the backward copy if asked."""
    item = config.get("backward_layer") if backward else None
    if not isinstance(item, dict):
        item = config.get("layer")
    if not isinstance(item, dict):
        return "", {}
    conf = item.get("config")
    return str(item.get("class_name", "")), conf if isinstance(conf, dict) else {}


def sub_object(class_name: str, config: dict[str, Any], rel: str) -> tuple[str, dict[str, Any]]:
    """Return the class and config of a layer's sub-object at rel (forward_layer/cell, layer, cell, ...)."""
    cls, conf = class_name, config
    for part in (p for p in rel.split("/") if p):
        if part == "cell" and cls in _RNN_LAYERS:
            cls = _RNN_LAYERS[cls]  # a cell's initializers live in its RNN layer's config
        elif part in ("layer", "forward_layer", "backward_layer") and cls in _WRAPPERS:
            cls, conf = _inner(conf, backward=part == "backward_layer")
        else:
            return "", {}
    return cls, conf


def wrapped(class_name: str, config: dict[str, Any], weight_path: str) -> tuple[str, dict[str, Any]]:
    """Return the class and config that hold a wrapper's weight, from its legacy HDF5 path."""
    if class_name not in _WRAPPERS:
        return class_name, config
    inner = _inner(config, backward="backward" in weight_path)
    return inner if inner[0] else (class_name, config)


def init_spec(name: str, class_name: str, config: dict[str, Any]) -> Any:
    """Return the initializer of one variable from its layer's config, as Keras applies it."""
    spec = _init_for(name, config)
    # An LSTM records bias_initializer zeros, but unit_forget_bias (on by default) puts ones on the forget gate.
    lstm = class_name in ("LSTM", "LSTMCell")
    if lstm and name == "bias" and spec is not None and spec.kind == "zeros" and config.get("unit_forget_bias", True):
        return InitSpec("keras_lstm_bias", origin=spec.origin)
    return spec


# --------------------------------------------------------------------------- config walking


@dataclass(eq=False)
class CfgLayer:
    """One non-container layer found in a Keras model config."""

    uid: str  # names of enclosing models and the layer, joined by '/'
    name: str
    class_name: str
    config: dict[str, Any]
    h5_path: str  # where Keras 3 saves its variables: layers/<snake>[_n]/...
    container_h5: str  # the enclosing model's Keras 3 path
    feeds: list[str] = field(default_factory=list)


def _history_names(obj: Any) -> Iterator[str]:
    """Yield producer layer names found in an inbound_nodes / output_layers structure (Keras 2 or 3)."""
    if isinstance(obj, dict):
        hist = obj.get("keras_history")
        if isinstance(hist, list) and hist and isinstance(hist[0], str):
            yield hist[0]
            return
        for v in obj.values():
            yield from _history_names(v)
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            yield obj[0]
            yield from _history_names(obj[3:])
        else:
            for v in obj:
                yield from _history_names(v)


def layer_list(cfg: Any) -> list[dict[str, Any]] | None:
    inner = cfg.get("config") if isinstance(cfg, dict) else None
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return None
    return [item for item in layers if isinstance(item, dict)]


def layer_name(item: dict[str, Any]) -> str:
    raw = item.get("config")
    conf = raw if isinstance(raw, dict) else {}
    return str(item.get("name") or conf.get("name") or item.get("class_name", "layer"))


def walk_config(model_cfg: Any) -> list[CfgLayer]:
    """Flatten a model config into its non-container layers, each with its consumers (feeds)."""
    out: list[CfgLayer] = []
    edges: list[tuple[str, str]] = []
    ends: dict[str, tuple[list[str], list[str]]] = {}  # uid -> (entry uids, exit uids)

    def visit(cfg: dict[str, Any], h5_path: str, prefix: str) -> tuple[list[str], list[str]]:
        items = layer_list(cfg) or []
        raw_conf = cfg.get("config")
        conf = raw_conf if isinstance(raw_conf, dict) else {}
        sequential = cfg.get("class_name") == "Sequential"
        used: dict[str, int] = {}
        order: list[str] = []
        inputs: set[str] = set()
        for pos, item in enumerate(items):
            cls = str(item.get("class_name", "Unknown"))
            name = layer_name(item)
            uid = prefix + name
            is_input = cls == "InputLayer"
            # Sequential.layers omits a leading InputLayer, so Keras 3 gives it no key.
            if is_input and sequential and pos == 0:
                key = ""
            else:
                base = snake_case(cls)
                used[base] = used.get(base, -1) + 1
                key = base if used[base] == 0 else f"{base}_{used[base]}"
            path = "/".join(p for p in (h5_path, "layers", key) if p) if key else ""
            if is_input:
                inputs.add(name)
                ends[uid] = ([], [])
            elif layer_list(item) is not None:
                ends[uid] = visit(item, path, uid + "/")
            else:
                out.append(CfgLayer(uid, name, cls, item.get("config") or {}, path, h5_path))
                ends[uid] = ([uid], [uid])
            order.append(name)
            if not sequential:
                for producer in dict.fromkeys(_history_names(item.get("inbound_nodes", []))):
                    edges.append((prefix + producer, uid))
        real = [n for n in order if n not in inputs]
        if sequential:
            edges.extend((prefix + a, prefix + b) for a, b in itertools.pairwise(real))
            if not real:
                return [], []
            return ends[prefix + real[0]][0], ends[prefix + real[-1]][1]
        entry = [b for a, b in edges if a.startswith(prefix) and a[len(prefix) :] in inputs]
        entries = [e for uid in dict.fromkeys(entry) for e in ends.get(uid, ([], []))[0]]
        outs = dict.fromkeys(_history_names(conf.get("output_layers", [])))
        exits = [e for n in outs for e in ends.get(prefix + n, ([], []))[1]]
        return entries, exits

    if isinstance(model_cfg, dict):
        if layer_list(model_cfg) is not None:
            visit(model_cfg, "", "")
        elif model_cfg.get("class_name") not in _CONTAINERS:
            # A single bare layer saved as a model: list it alone.
            out.append(
                CfgLayer(
                    layer_name(model_cfg),
                    layer_name(model_cfg),
                    str(model_cfg.get("class_name")),
                    model_cfg.get("config") or {},
                    "",
                    "",
                )
            )
    by_uid = {layer.uid: layer for layer in out}
    for a, b in edges:
        for src in ends.get(a, ([], []))[1]:
            for dst in ends.get(b, ([], []))[0]:
                if src in by_uid and dst not in by_uid[src].feeds:
                    by_uid[src].feeds.append(dst)
    return out


def unique_names(uids: list[str], names: list[str]) -> dict[str, str]:
    """Give each uid its short name, or its full uid where the short name repeats."""
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return {u: (n if counts[n] == 1 else u) for u, n in zip(uids, names)}


_AUTO_BASES = {snake_case(c) for c in (*_VAR_NAMES, "MaxPooling2D", "AveragePooling2D", "Flatten", "Dropout")}


def looks_auto(name: str, class_name: str) -> bool:
    base = re.sub(r"_\d+$", "", name)
    return base == snake_case(class_name) or base in _AUTO_BASES


def rows_to_layers(rows: list[Any]) -> list[LayerInfo]:
    """Turn (id, name, class, type source, path, params, attrs, feeds) rows into uniquely named layers."""
    names = unique_names([r[0] for r in rows], [r[1] for r in rows])
    return [
        LayerInfo(
            name=names[uid],
            class_name=cls,
            index=i,
            params=params,
            type_source=src,
            path=path,
            feeds=tuple(names[f] for f in feeds if f in names),
            attrs=attrs,
        )
        for i, (uid, _n, cls, src, path, params, attrs, feeds) in enumerate(rows)
    ]
