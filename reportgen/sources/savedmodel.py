"""Weight source for TensorFlow SavedModel folders: variables from the checkpoint reader, no graph loaded or run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.hdf5_safe import natural_key
from reportgen.sources.keras_config import class_from_names, role_of
from reportgen.sources.naming import is_buffer


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
