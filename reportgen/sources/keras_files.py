"""Weight sources for Keras files: Keras 3 .weights.h5, legacy .h5, .keras archives and SavedModel folders.

Nothing here deserialises a model: configs are read as plain JSON data and tensors with h5py
(or TensorFlow's checkpoint reader for SavedModel variables, which runs no graph).
"""

from __future__ import annotations

import itertools
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, InitSpec, LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.hdf5_safe import SafeH5, natural_key
from reportgen.sources.keras_init import snake_case, spec_from_keras
from reportgen.sources.naming import is_buffer
from reportgen.sources.safety import load_json
from reportgen.sources.zip_member import MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES, ZIP_ERRORS, open_member, read_small

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
    from reportgen.sources.base import ROLES

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


def _init_for(name: str, config: dict[str, Any]) -> Any:
    key = _INIT_KEY.get(name, f"{name}_initializer")
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


def _layer_list(cfg: Any) -> list[dict[str, Any]] | None:
    inner = cfg.get("config") if isinstance(cfg, dict) else None
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return None
    return [item for item in layers if isinstance(item, dict)]


def _lname(item: dict[str, Any]) -> str:
    raw = item.get("config")
    conf = raw if isinstance(raw, dict) else {}
    return str(item.get("name") or conf.get("name") or item.get("class_name", "layer"))


def walk_config(model_cfg: Any) -> list[CfgLayer]:
    """Flatten a model config into its non-container layers, each with its consumers (feeds)."""
    out: list[CfgLayer] = []
    edges: list[tuple[str, str]] = []
    ends: dict[str, tuple[list[str], list[str]]] = {}  # uid -> (entry uids, exit uids)

    def visit(cfg: dict[str, Any], h5_path: str, prefix: str) -> tuple[list[str], list[str]]:
        items = _layer_list(cfg) or []
        raw_conf = cfg.get("config")
        conf = raw_conf if isinstance(raw_conf, dict) else {}
        sequential = cfg.get("class_name") == "Sequential"
        used: dict[str, int] = {}
        order: list[str] = []
        inputs: set[str] = set()
        for pos, item in enumerate(items):
            cls = str(item.get("class_name", "Unknown"))
            name = _lname(item)
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
            elif _layer_list(item) is not None:
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
        if _layer_list(model_cfg) is not None:
            visit(model_cfg, "", "")
        elif model_cfg.get("class_name") not in _CONTAINERS:
            # A single bare layer saved as a model: list it alone.
            out.append(
                CfgLayer(
                    _lname(model_cfg),
                    _lname(model_cfg),
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


# --------------------------------------------------------------------------- Keras 3 weights layout


@dataclass(frozen=True)
class Owner:
    """An object that Keras 3 saved variables for: its group path, name attribute and datasets."""

    path: str  # group path without the leading '/', '' for the model itself
    name_attr: str | None
    datasets: tuple[str, ...]  # dataset paths in vars/0..n order


def scan_owners(h5: SafeH5) -> list[Owner]:
    """Find every group with a `vars` subgroup, in natural name order (HDF5 keeps no creation order)."""
    owners: list[Owner] = []
    for path, obj in [("/", h5.root), *h5.walk()]:
        if not hasattr(obj, "keys") or path.rsplit("/", 1)[-1] == "vars":
            continue
        # Optimizer slots (Adam moments, step counter) are training state, not model weights.
        if path.strip("/").split("/", 1)[0] in ("optimizer", "metrics"):
            continue
        if not h5.has(obj, "vars"):
            continue
        vgroup = h5.child(obj, "vars")
        if not hasattr(vgroup, "keys"):
            continue
        members = [o.name for _n, o in h5.members(vgroup) if not hasattr(o, "keys")]
        name = h5.attr(vgroup, "name")
        owners.append(Owner(path.strip("/"), str(name) if name is not None else None, tuple(members)))
    return owners


_AUTO_BASES = {snake_case(c) for c in (*_VAR_NAMES, "MaxPooling2D", "AveragePooling2D", "Flatten", "Dropout")}


def _looks_auto(name: str, class_name: str) -> bool:
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


class _H5Source(WeightSource):
    """Shared reading for sources backed by one safe HDF5 file."""

    h5: SafeH5
    _layers: list[LayerInfo]

    def layers(self) -> list[LayerInfo]:
        """Return every layer in flat order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the whole tensor in its stored dtype."""
        return self.h5.read(self.h5.dataset(ref.key))

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield the tensor flattened, reading at most max_elems elements at a time."""
        return self.h5.iter_slabs(self.h5.dataset(ref.key), max_elems)

    def close(self) -> None:
        """Close the HDF5 file."""
        self.h5.close()

    def _ref(self, key: str, name: str, init: Any = None) -> TensorRef:
        ds = self.h5.dataset(key)
        role, shape, dtype = role_of(name), tuple(int(d) for d in ds.shape or ()), self.h5.dtype_name(ds)
        return TensorRef(
            key=key,
            name=name,
            role=role,
            shape=shape,
            dtype=dtype,
            init=init,
            trainable=not is_buffer(name.rsplit("/", 1)[-1], role, shape, dtype),
        )


class KerasWeightsSource(_H5Source):
    """A Keras 3 weights file (layers/<key>/vars/0..n), laid out by a model config when one is given.

    Without a config, layers come in natural name order of their HDF5 groups (conv2d, conv2d_1,
    ..., conv2d_10), since HDF5 does not record creation order, and classes are guessed from shapes.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        config: Any = None,
        label: str | None = None,
        info: SourceInfo | None = None,
        h5: SafeH5 | None = None,
    ) -> None:
        self.path = Path(path)
        self.h5 = h5 if h5 is not None else SafeH5(self.path, label)
        try:
            self._layers = self._build(config)
        except BaseException:
            self.h5.close()
            raise
        self.info = info or SourceInfo(
            format="keras-weights-h5",
            description=f"Keras 3 weights file {self.path.name} (layer types inferred from tensor shapes)",
            files=(self.path,),
        )
        state = self._training_state()
        if state:
            self.info.description += f"; not read: {state} optimizer/metric variables (training state)"

    def _training_state(self) -> int:
        """Count the optimizer and metric variables a weights file holds beside the model's own."""
        root = self.h5.root
        groups = [self.h5.child(root, g) for g in ("optimizer", "metrics") if self.h5.has(root, g)]
        return sum(
            1 for grp in groups if hasattr(grp, "keys") for _, obj in self.h5.walk(grp) if not hasattr(obj, "keys")
        )

    def _build(self, config: Any) -> list[LayerInfo]:
        owners = scan_owners(self.h5)
        by_path = {o.path: o for o in owners}
        claimed: set[str] = set()
        rows: list[tuple[str, str, str, str, str, tuple[TensorRef, ...], tuple, list[str]]] = []
        for layer in walk_config(config) if config is not None else []:
            owner = self._match(layer, by_path, owners)
            params: list[TensorRef] = []
            if owner is not None:
                params = self._config_params(layer, owner, owners, claimed)
            path = owner.path if owner is not None else layer.h5_path
            rows.append(
                (
                    layer.uid,
                    layer.name,
                    layer.class_name,
                    "config",
                    path,
                    tuple(params),
                    layer_attrs(layer.config),
                    layer.feeds,
                )
            )
        nested = {o.path for o in owners for p in owners if p.path.startswith(o.path + "/") or o.path == ""}
        for owner in owners:
            # A config names every layer it has; leftover empty groups are its input layers.
            if owner.path in claimed or (not owner.datasets and (owner.path in nested or config is not None)):
                continue
            shapes = [tuple(self.h5.dataset(k).shape or ()) for k in owner.datasets]
            cls = infer_class(shapes)
            names = var_names(cls, {}, len(shapes)) or tuple(str(i) for i in range(len(shapes)))
            refs = tuple(self._ref(k, n) for k, n in zip(owner.datasets, names))
            if cls == "Unknown":
                refs = tuple(replace(p, role="other") for p in refs)
            rows.append((owner.path, self._owner_name(owner, cls), cls, "inferred", owner.path, refs, (), []))
        return rows_to_layers(rows)

    @staticmethod
    def _owner_name(owner: Owner, class_name: str) -> str:
        parts = owner.path.split("/")
        # Keys under layers/ are generated from class names; an attribute key (self.dsn1) is
        # chosen by the model author and beats an auto-generated layer name such as conv2d_3.
        under_list = len(parts) > 1 and parts[-2] == "layers"
        if owner.name_attr and (under_list or not _looks_auto(owner.name_attr, class_name)):
            return owner.name_attr
        return owner.path or (owner.name_attr or "model")

    @staticmethod
    def _match(layer: CfgLayer, by_path: dict[str, Owner], owners: list[Owner]) -> Owner | None:
        owner = by_path.get(layer.h5_path)
        if owner is not None and owner.name_attr in (None, layer.name):
            return owner
        # Name attributes (Keras >= 3.x) disambiguate when the key arithmetic disagrees.
        prefix = "/".join(p for p in (layer.container_h5, "layers") if p) + "/"
        for cand in owners:
            rest = cand.path[len(prefix) :] if cand.path.startswith(prefix) else None
            if rest and "/" not in rest and cand.name_attr == layer.name:
                return cand
        return owner

    def _config_params(self, layer: CfgLayer, owner: Owner, owners: list[Owner], claimed: set[str]) -> list[TensorRef]:
        claimed.add(owner.path)
        groups = [("", owner, layer.class_name)]
        # Sub-objects of the layer (an RNN's cell, attention projections) carry its other variables.
        for sub in owners:
            if sub.path.startswith(owner.path + "/") and sub.path not in claimed:
                rel = sub.path[len(owner.path) + 1 :]
                claimed.add(sub.path)
                groups.append((rel + "/", sub, ""))
        params: list[TensorRef] = []
        # Forward before backward: HDF5 keeps no creation order and 'backward' sorts first.
        groups.sort(key=lambda g: g[0].replace("forward_layer", "a_forward"))
        for rel, grp, _cls in groups:
            cls, conf = sub_object(layer.class_name, layer.config, rel)
            names = var_names(cls, conf, len(grp.datasets)) if cls else None
            if names is None:
                shapes = [tuple(self.h5.dataset(k).shape or ()) for k in grp.datasets]
                names = var_names(infer_class(shapes), {}, len(shapes)) or tuple(str(i) for i in range(len(shapes)))
            for key, name in zip(grp.datasets, names):
                params.append(self._ref(key, rel + name, init_spec(name, cls, conf)))
        return params


# --------------------------------------------------------------------------- legacy .h5


class KerasLegacyH5Source(_H5Source):
    """A Keras 2 / tf.keras .h5 file: a full model (model_config + model_weights) or save_weights output."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.h5 = SafeH5(self.path)
        try:
            self._layers, full = self._build()
        except BaseException:
            self.h5.close()
            raise
        kind = "model" if full else "weights"
        self.info = SourceInfo(
            format="keras-h5",
            description=f"Keras legacy HDF5 {kind} file {self.path.name}",
            files=(self.path,),
        )
        version = self.h5.attr(self.h5.root, "keras_version")
        if version:
            self.info.extra["keras_version"] = str(version)

    def _build(self) -> tuple[list[LayerInfo], bool]:
        root = self.h5.root
        raw = self.h5.attr(root, "model_config")
        config = None
        if raw is not None:
            config = load_json(raw if isinstance(raw, str) else str(raw), f"{self.h5.label}: attribute model_config")
        base = self.h5.get("model_weights") if self.h5.has(root, "model_weights") else root
        layer_names = self.h5.attr(base, "layer_names")
        if not isinstance(layer_names, list):
            raise SourceError(f"{self.h5.label}: {base.name}: attribute layer_names missing or malformed")
        # weights[name of the layer that owns them] = [(param name, dataset path)]
        weights: dict[str, list[tuple[str, str]]] = {}
        order: list[str] = []
        containers: set[str] = set()
        for top in (str(n) for n in layer_names):
            group = self.h5.get(f"{base.name}/{top}")
            wnames = self.h5.attr(group, "weight_names", [])
            if not isinstance(wnames, list):
                raise SourceError(f"{self.h5.label}: {group.name}: attribute weight_names malformed")
            owners = {w.split("/")[-2] if "/" in w else top for w in map(str, wnames)}
            split = len(owners) > 1 or (config is not None and self._is_container(config, top))
            order.append(top)
            weights.setdefault(top, [])
            if split:
                containers.add(top)
            shorts = [w.rsplit("/", 1)[-1].split(":")[0] for w in map(str, wnames)]
            for w, short in zip(map(str, wnames), shorts):
                owner = w.split("/")[-2] if split and "/" in w else top
                if owner not in weights:
                    weights[owner] = []
                    order.append(owner)
                # A wrapper holds each name twice (forward and backward): keep the path inside the layer.
                name = short if shorts.count(short) == 1 or split else _inside(w, top)
                weights[owner].append((name, f"{group.name}/{w}"))
        rows: list[tuple[str, str, str, str, str, tuple[TensorRef, ...], tuple, list[str]]] = []
        done: set[str] = set()
        for layer in walk_config(config) if config is not None else []:
            found = weights.get(layer.name, [])
            done.add(layer.name)
            params = tuple(
                self._ref(k, n, init_spec(n.rsplit("/", 1)[-1], *wrapped(layer.class_name, layer.config, n)))
                for n, k in found
            )
            path = found[0][1].rsplit("/", 1)[0] if found else f"{base.name}/{layer.name}"
            rows.append(
                (
                    layer.uid,
                    layer.name,
                    layer.class_name,
                    "config",
                    path,
                    params,
                    layer_attrs(layer.config),
                    layer.feeds,
                )
            )
        for name in order:
            if name in done or (not weights[name] and (name in containers or config is not None)):
                continue
            refs = [self._ref(k, n) for n, k in weights[name]]
            cls = infer_class([r.shape for r in refs])
            path = refs[0].key.rsplit("/", 1)[0] if refs else f"{base.name}/{name}"
            rows.append((name, name, cls, "inferred", path, tuple(refs), (), []))
        layers = rows_to_layers(rows)
        return layers, raw is not None

    @staticmethod
    def _is_container(config: Any, name: str) -> bool:
        for item in _layer_list(config) or []:
            if _lname(item) == name:
                return _layer_list(item) is not None
        return False


def _inside(weight_name: str, layer: str) -> str:
    """Return a legacy weight name relative to its layer (bi/forward_lstm/cell/kernel:0 -> forward_lstm/cell/kernel)."""
    path = weight_name.split(":")[0]
    return path[len(layer) + 1 :] if path.startswith(layer + "/") else path


# --------------------------------------------------------------------------- .keras archive


class KerasArchiveSource(KerasWeightsSource):
    """A Keras 3 .keras zip: config.json read as plain JSON, weights read in place from model.weights.h5."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        label = str(path)
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, *ZIP_ERRORS) as exc:
            raise SourceError(f"{label}: not a readable zip archive ({type(exc).__name__})") from None
        with zf:
            config = load_json(read_small(zf, "config.json", label, MAX_CONFIG_BYTES), f"{label}: config.json")
            names = set(zf.namelist())
            if "model.weights.h5" not in names:
                other = "model.weights.npz" if "model.weights.npz" in names else "model.weights.h5"
                raise SourceError(
                    f"{label}: archive member {other} {'is not supported' if other.endswith('npz') else 'missing'}"
                )
            # Read in place (or from an unnamed temporary file): no extracted copy outlives this process.
            self._member, size = open_member(path, zf, "model.weights.h5", label, MAX_WEIGHTS_BYTES)
        try:
            meta = _small_json(path)
            cls = config.get("class_name", "model") if isinstance(config, dict) else "model"
            info = SourceInfo(format="keras-archive", description=f"Keras archive {path.name} ({cls})", files=(path,))
            if meta.get("keras_version"):
                info.extra["keras_version"] = str(meta["keras_version"])
            member_label = f"{label}:model.weights.h5"
            h5 = SafeH5(path, member_label, fileobj=self._member, size=size)
            super().__init__(path, config=config, label=member_label, info=info, h5=h5)
        except BaseException:
            self._member.close()
            raise

    def close(self) -> None:
        """Close the weights file and the archive member under it."""
        super().close()
        self._member.close()


def _small_json(path: Path) -> dict[str, Any]:
    """Return metadata.json of a .keras archive, or {} when absent or odd."""
    try:
        with zipfile.ZipFile(path) as zf:
            data = load_json(read_small(zf, "metadata.json", str(path), 1 << 20), f"{path}: metadata.json")
    except (SourceError, OSError, *ZIP_ERRORS):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- SavedModel


class SavedModelSource(WeightSource):
    """A TensorFlow SavedModel folder; variables come from its checkpoint, no graph is loaded or run."""

    _SKIP = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter", "optimizer/", "_optimizer", "keras_api/metrics")

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        prefix = self.path / "variables" / "variables"
        if not (self.path / "variables" / "variables.index").is_file():
            raise SourceError(f"{self.path}: variables/variables.index missing")
        try:
            import tensorflow as tf  # only a checkpoint reader is used: it parses data, runs nothing

            self._reader = tf.train.load_checkpoint(str(prefix))
            shapes = self._reader.get_variable_to_shape_map()
            dtypes = self._reader.get_variable_to_dtype_map()
        except Exception as exc:  # TensorFlow raises many unrelated types for a bad checkpoint
            raise SourceError(f"{self.path}: variables checkpoint unreadable ({str(exc).splitlines()[0]})") from None
        full_names = self._full_names()
        groups: dict[str, list[TensorRef]] = {}
        seen: set[str] = set()
        # Checkpoint keys come first in object-graph order when the graph names them, which keeps
        # the model's variable order; the same variable may sit under two keys, so keep the first.
        keys = [k for k in full_names if k in shapes] + sorted(set(shapes) - set(full_names), key=natural_key)
        skipped = 0
        for key in keys:
            if any(s in key for s in self._SKIP):
                skipped += "optimizer" in key or "metrics" in key
                continue
            clean = full_names.get(key) or key.split("/.ATTRIBUTES")[0]
            if clean in seen:
                continue
            seen.add(clean)
            layer, _, pname = clean.rpartition("/")
            layer = layer or clean
            role, shape, dtype = role_of(pname), tuple(int(d) for d in shapes[key]), dtypes[key].name
            groups.setdefault(layer, []).append(
                TensorRef(
                    key=key,
                    name=pname,
                    role=role,
                    shape=shape,
                    dtype=dtype,
                    trainable=not is_buffer(pname, role, shape, dtype),
                )
            )
        # Drop the shared model prefix (sequential/d1 -> d1) when every layer has it.
        heads = {name.split("/", 1)[0] for name in groups}
        if len(heads) == 1 and all("/" in name for name in groups):
            groups = {name.split("/", 1)[1]: refs for name, refs in groups.items()}
        self._layers = []
        for i, (lname, refs) in enumerate(groups.items()):
            cls = class_from_names([r.name for r in refs], [r.shape for r in refs])
            self._layers.append(
                LayerInfo(
                    name=lname,
                    class_name=cls,
                    index=i,
                    params=tuple(refs),
                    type_source="inferred",
                    path=lname,
                )
            )
        self.info = SourceInfo(
            format="tf-savedmodel",
            description=f"TensorFlow SavedModel {self.path.name}"
            + (f"; not read: {skipped} optimizer/metric variables (training state)" if skipped else ""),
            files=tuple(sorted(p for p in self.path.rglob("*") if p.is_file())),
        )

    def _full_names(self) -> dict[str, str]:
        """Map checkpoint keys to the variables' own names, read from the object graph (a protobuf)."""
        try:
            from tensorflow.core.protobuf import trackable_object_graph_pb2

            graph = trackable_object_graph_pb2.TrackableObjectGraph()
            graph.ParseFromString(self._reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        except Exception:  # no graph means plain key names are used
            return {}
        return {
            a.checkpoint_key: a.full_name.split(":")[0] for node in graph.nodes for a in node.attributes if a.full_name
        }

    def layers(self) -> list[LayerInfo]:
        """Return layers grouped from variable names, in the checkpoint's object-graph order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return one checkpoint variable."""
        try:
            return np.asarray(self._reader.get_tensor(ref.key))
        except Exception as exc:  # see __init__
            raise SourceError(f"{self.path}: variable {ref.key}: {str(exc).splitlines()[0]}") from None


__all__ = [
    "KerasArchiveSource",
    "KerasLegacyH5Source",
    "KerasWeightsSource",
    "SavedModelSource",
    "infer_class",
]
