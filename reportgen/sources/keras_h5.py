"""Weight sources for Keras 3 files: .weights.h5 (read with h5py) and the .keras zip around one.

Nothing here deserialises a model: the config is read as plain JSON data.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.hdf5_safe import SafeH5
from reportgen.sources.keras_config import (
    CfgLayer,
    infer_class,
    init_spec,
    layer_attrs,
    looks_auto,
    role_of,
    rows_to_layers,
    sub_object,
    var_names,
    walk_config,
)
from reportgen.sources.naming import is_buffer
from reportgen.sources.safety import load_json
from reportgen.sources.zip_member import MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES, ZIP_ERRORS, open_member, read_small

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


class H5Source(WeightSource):
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


class KerasWeightsSource(H5Source):
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
        if owner.name_attr and (under_list or not looks_auto(owner.name_attr, class_name)):
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
