"""Weight source for Keras 2 / tf.keras legacy .h5 files, full models or save_weights output, read with h5py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportgen.errors import SourceError
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef
from reportgen.sources.hdf5_safe import SafeH5
from reportgen.sources.keras_config import (
    infer_class,
    init_spec,
    layer_attrs,
    layer_list,
    layer_name,
    rows_to_layers,
    walk_config,
    wrapped,
)
from reportgen.sources.keras_h5 import H5Source
from reportgen.sources.safety import load_json


class KerasLegacyH5Source(H5Source):
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
        for item in layer_list(config) or []:
            if layer_name(item) == name:
                return layer_list(item) is not None
        return False


def _inside(weight_name: str, layer: str) -> str:
    """Return a legacy weight name relative to its layer (bi/forward_lstm/cell/kernel:0 -> forward_lstm/cell/kernel)."""
    path = weight_name.split(":")[0]
    return path[len(layer) + 1 :] if path.startswith(layer + "/") else path
