"""Read the initializers of an ONNX model, following external data only inside the model's folder."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.naming import FlatTensor, group_layers, is_buffer, is_norm_name, split_name
from reportgen.sources.safetensors_file import iter_file_chunks
from reportgen.sources.safety import open_regular

EXTRA_HINT = "pip install 'reportgen[onnx]'"

# Operators that are layers in their own right, with what each weight input means: (param, role).
_OP_INPUTS: dict[str, dict[int, tuple[str, str]]] = {
    "Conv": {1: ("weight", "kernel"), 2: ("bias", "bias")},
    "ConvTranspose": {1: ("weight", "kernel"), 2: ("bias", "bias")},
    "Gemm": {1: ("weight", "kernel"), 2: ("bias", "bias")},
    "MatMul": {1: ("weight", "kernel"), 0: ("weight", "kernel")},
    "BatchNormalization": {
        1: ("weight", "gamma"),
        2: ("bias", "beta"),
        3: ("running_mean", "moving_mean"),
        4: ("running_var", "moving_variance"),
    },
    "LayerNormalization": {1: ("weight", "gamma"), 2: ("bias", "beta")},
    "InstanceNormalization": {1: ("weight", "gamma"), 2: ("bias", "beta")},
    "GroupNormalization": {1: ("weight", "gamma"), 2: ("bias", "beta")},
    "Gather": {0: ("weight", "embedding")},
    "LSTM": {1: ("W", "kernel"), 2: ("R", "recurrent_kernel"), 3: ("B", "bias")},
    "GRU": {1: ("W", "kernel"), 2: ("R", "recurrent_kernel"), 3: ("B", "bias")},
    "RNN": {1: ("W", "kernel"), 2: ("R", "recurrent_kernel"), 3: ("B", "bias")},
    "PRelu": {1: ("slope", "other")},
}
# Operators that hand a weight on unchanged in meaning (a transposed, cast or dequantized kernel is still
# the kernel): input 0 is followed through them to the operator that uses it.
_PASS_THROUGH = {
    "Identity",
    "Cast",
    "CastLike",
    "Transpose",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "DequantizeLinear",
    "QuantizeLinear",
}
_PASS_DEPTH = 4
# Element-wise operators whose constant operand, when it holds more than one value, is a learned
# per-channel scale or bias (a decomposed LayerNorm's gamma, a MatMul's bias added after it).
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div"}
# Names like conv1.weight carry the layer; names like onnx::Conv_123 or /fc/MatMul_weight do not.
_TORCH_STYLE = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)+$")
# ONNX packs these several to a byte, so their byte length is not count * itemsize.
_PACKED = {"int4", "uint4", "int2", "uint2", "float4_e2m1fn"}


@dataclass(frozen=True)
class External:
    """Where an initializer's bytes lie outside the model file."""

    file: Path
    offset: int
    length: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


def _import_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise SourceError(f"{path}: reading ONNX files needs the optional extra: {EXTRA_HINT}") from None
    return onnx


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _external(tensor: Any, model: Path, dtype: np.dtype[Any], kind: str = "initializer") -> External:
    """Check an initializer's external_data entries and return where its bytes are."""
    where = f"{model}: {kind} {tensor.name!r}"
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    pure = PurePosixPath(location)
    folder = model.parent.resolve()
    if not location or pure.is_absolute() or ".." in pure.parts or "\\" in location or ":" in location:
        raise SourceError(f"{where}: refused external data location (must be a file inside {model.parent})")
    target = (folder / pure).resolve()
    # resolve() follows symlinks, so a link inside the folder pointing out of it is caught here.
    if not target.is_relative_to(folder):
        raise SourceError(f"{where}: refused external data location (leads outside {model.parent})")
    if not target.is_file():
        raise SourceError(f"{where}: external data file {location!r} does not exist")
    # A hard link has no path to resolve: its other name may be any file on the same file system.
    # Opened as ONNX's own loader advises, refusing links, and checked again at every later open.
    fd = open_regular(folder / pure, nofollow=True, single_link=True)
    os.close(fd)
    if dtype.name in _PACKED or dtype.kind in "OUS":
        raise SourceError(f"{where}: dtype {dtype.name} is not supported in external data")
    shape = tuple(int(d) for d in tensor.dims)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(expected)))
    except ValueError:
        raise SourceError(f"{where}: external data offset/length are not integers") from None
    size = target.stat().st_size
    if offset < 0 or length < 0 or offset + length > size:
        raise SourceError(
            f"{where}: external data offset {offset} + length {length} exceeds size {size} of {location!r}"
        )
    if length != expected:
        raise SourceError(f"{where}: external data length {length} does not match shape {shape} of {dtype.name}")
    return External(target, offset, length, dtype, shape)


class OnnxSource(WeightSource):
    """Weights from the initializers of an ONNX graph, read without running the graph."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        self._onnx = onnx = _import_onnx(self.path)
        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # protobuf and onnx raise several types for bad files
            raise SourceError(f"{self.path}: cannot read as ONNX ({_first_line(exc)})") from None
        graph = model.graph
        self._internal: dict[str, Any] = {}
        self._external: dict[str, External] = {}
        dtypes: dict[str, str] = {}
        nodes = _all_nodes(graph)
        # Exporters keep weights as initializers, or as Constant nodes (older exports, models whose
        # branches live in If/Loop subgraphs); both are read, in subgraphs too.
        tensors = [(t, "initializer") for g in _all_graphs(graph) for t in g.initializer]
        not_read = [f"sparse initializer {t.values.name!r}" for g in _all_graphs(graph) for t in g.sparse_initializer]
        for node in nodes:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                tensor, skipped = _constant_tensor(onnx, node)
                if tensor is not None:
                    tensors.append((tensor, "Constant"))
                elif skipped:
                    not_read.append(skipped)
        for tensor, kind in tensors:
            if not isinstance(tensor.name, str):  # protobuf hands over invalid UTF-8 as bytes
                raise SourceError(f"{self.path}: {kind} name is not UTF-8 text")
            if tensor.name in dtypes:
                raise SourceError(f"{self.path}: {kind} {tensor.name!r}: defined twice")
            try:
                dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
            except Exception:  # unknown data_type codes raise KeyError or ValueError
                raise SourceError(
                    f"{self.path}: {kind} {tensor.name!r}: unknown data type {tensor.data_type}"
                ) from None
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                self._external[tensor.name] = _external(tensor, self.path, dtype, kind)
            else:
                self._internal[tensor.name] = tensor
            dtypes[tensor.name] = dtype.name
        if not dtypes:
            what = f" (not read: {', '.join(not_read[:5])})" if not_read else ""
            raise SourceError(
                f"{self.path}: no weights found: {len(nodes)} nodes, no initializer and no Constant tensor{what}"
            )
        try:
            self._layers = self._build_layers(nodes, tensors, dtypes)
        except (TypeError, ValueError) as exc:  # node names or types that are not text (invalid UTF-8)
            raise SourceError(f"{self.path}: malformed graph ({type(exc).__name__})") from None
        files = sorted({e.file for e in self._external.values()})
        constants = sum(1 for _, kind in tensors if kind == "Constant")
        description = f"{len(tensors) - constants} initializers"
        if constants:
            description += f", {constants} Constant tensors"
        description += f", {len(nodes)} nodes, opset " + ", ".join(
            f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import
        )
        if not_read:
            description += f"; not read: {', '.join(not_read[:5])}" + (
                f" and {len(not_read) - 5} more" if len(not_read) > 5 else ""
            )
        self.info = SourceInfo(
            format="onnx",
            description=description,
            files=(self.path, *files),
            extra={"producer": f"{model.producer_name} {model.producer_version}".strip()[:200]},
        )

    def _build_layers(
        self, nodes: list[Any], tensors: list[tuple[Any, str]], dtypes: dict[str, str]
    ) -> list[LayerInfo]:
        """Name layers by tensor names where they are torch-style, else by the node that uses them."""
        readers: dict[str, list[tuple[int, int]]] = {}
        for n, node in enumerate(nodes):
            for i, name in enumerate(node.input):
                readers.setdefault(name, []).append((n, i))
        producers = {out: node for node in nodes for out in node.output}
        node_layer: dict[int, str] = {}
        class_names: dict[str, str] = {}
        flat: list[tuple[int, FlatTensor]] = []
        for t, _kind in tensors:
            shape = tuple(int(d) for d in t.dims)
            dtype = dtypes[t.name]
            weight = _weight_use(t.name, shape, nodes, readers)
            first = readers.get(t.name, [None])[0]
            use = weight[:2] if weight else first
            node = nodes[use[0]] if use else None
            op = node.op_type if node is not None and node.domain in ("", "ai.onnx") else ""
            declared = weight[2] if weight else None
            layout = None
            if op == "MatMul" or (op == "Gemm" and not _attr(node, "transB", 0)):
                layout = "keras"  # MatMul and plain Gemm store weights as (in, out)
            trainable = _trainable(t.name, shape, dtype, weight, readers.get(t.name, []), nodes)
            if _TORCH_STYLE.match(t.name):
                layer, param = split_name(t.name)
                ft = FlatTensor(t.name, shape, dtype, layer=layer, param=param, layout=layout, trainable=trainable)
            elif node is not None and use is not None:
                layer = node.name or f"{node.op_type}_{use[0]}"
                param = declared[0] if declared else f"input{use[1]}"
                role = declared[1] if declared else (_operand_role(node, use[1], producers) if trainable else None)
                ft = FlatTensor(
                    t.name, shape, dtype, layer=layer, param=param, role=role, layout=layout, trainable=trainable
                )
            else:
                ft = FlatTensor(t.name, shape, dtype, layer=t.name, param=t.name, role="other", trainable=False)
            if node is not None and use is not None:
                node_layer.setdefault(use[0], ft.layer or "")
                if declared and ft.layer:
                    class_names.setdefault(ft.layer, "Embedding" if op == "Gather" else op)
            flat.append((use[0] if use else len(nodes), ft))
        # Graph nodes are topologically sorted (a subgraph's nodes come before the node that holds it),
        # so the position of a tensor's use gives depth order.
        flat.sort(key=lambda pair: pair[0])
        feeds = _feeds(nodes, node_layer)
        return group_layers(
            [ft for _, ft in flat], layout="torch", order="appearance", class_names=class_names, feeds=feeds
        )

    def layers(self) -> list[LayerInfo]:
        """Return every layer in graph order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the initializer's values (a read-only memory map for external data)."""
        ext = self._external.get(ref.key)
        if ext is not None:
            try:
                with os.fdopen(open_regular(ext.file, nofollow=True, single_link=True), "rb") as fh:
                    if ext.length == 0:
                        return np.zeros(ext.shape, dtype=ext.dtype)
                    count = ext.length // ext.dtype.itemsize
                    mapped = np.memmap(fh, dtype=ext.dtype, mode="r", offset=ext.offset, shape=(count,))
                    return mapped.reshape(ext.shape)
            except (OSError, ValueError) as exc:
                where = f"{self.path}: initializer {ref.key!r}"
                raise SourceError(f"{where}: cannot map external data ({exc})") from None
        tensor = self._internal.get(ref.key)
        if tensor is None:
            raise SourceError(f"{self.path}: initializer {ref.key!r}: not in this model")
        try:
            return self._onnx.numpy_helper.to_array(tensor)
        except Exception as exc:  # malformed raw_data raises ValueError or others
            where = f"{self.path}: initializer {ref.key!r}"
            raise SourceError(f"{where}: cannot decode ({_first_line(exc)})") from None

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield the tensor flattened; external data is read chunk by chunk to keep memory bounded."""
        ext = self._external.get(ref.key)
        if ext is None:
            yield from super().iter_chunks(ref, max_elems)
            return
        count = ext.length // ext.dtype.itemsize
        yield from iter_file_chunks(ext.file, ext.offset, count, ext.dtype, max_elems, ref.key, confined=True)


def _all_graphs(graph: Any) -> list[Any]:
    """Return the graph and every subgraph held by its nodes' attributes (If branches, Loop bodies)."""
    out = [graph]
    for node in graph.node:
        for a in node.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                out += _all_graphs(sub)
    return out


def _all_nodes(graph: Any) -> list[Any]:
    """Return every node, each subgraph's nodes placed just before the node that holds them."""
    out: list[Any] = []
    for node in graph.node:
        for a in node.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                out += _all_nodes(sub)
        out.append(node)
    return out


def _constant_tensor(onnx: Any, node: Any) -> tuple[Any, str]:
    """Return a Constant node's value as a TensorProto named by its output, or (None, what was skipped)."""
    if not node.output:
        return None, ""
    name = node.output[0]
    for a in node.attribute:
        if a.name == "value" and a.HasField("t"):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(a.t)
            tensor.name = name
            return tensor, ""
        if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
            value = {"value_float": a.f, "value_int": a.i, "value_floats": list(a.floats), "value_ints": list(a.ints)}
            dtype = np.float32 if "float" in a.name else np.int64
            return onnx.numpy_helper.from_array(np.asarray(value[a.name], dtype=dtype), name), ""
        if a.name == "sparse_value":
            return None, f"sparse Constant {name!r}"
    return None, ""  # strings are not weights


def _weight_use(
    name: str, shape: tuple[int, ...], nodes: list[Any], readers: dict[str, list[tuple[int, int]]]
) -> tuple[int, int, tuple[str, str]] | None:
    """Return (node, input, (param, role)) where a tensor feeds a weight input, through pass-through ops."""
    todo, seen = [(name, 0)], {name}
    while todo:
        current, depth = todo.pop(0)
        for n, i in readers.get(current, []):
            node = nodes[n]
            if node.domain not in ("", "ai.onnx"):
                continue
            declared = _OP_INPUTS.get(node.op_type, {}).get(i)
            if declared is not None:
                if node.op_type == "Gather" and len(shape) != 2:
                    continue  # only a 2-D table is an embedding; other Gathers index constants
                return n, i, declared
            if node.op_type in _PASS_THROUGH and i == 0 and depth < _PASS_DEPTH:
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        todo.append((out, depth + 1))
    return None


def _trainable(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    weight: tuple[int, int, tuple[str, str]] | None,
    uses: list[tuple[int, int]],
    nodes: list[Any],
) -> bool:
    """Tell whether training updates a graph tensor: a weight input, a named parameter or a learned operand."""
    _, param = split_name(name) if _TORCH_STYLE.match(name) else ("", name)
    role = weight[2][1] if weight else "other"
    quantized = weight is not None and dtype in ("int8", "uint8", "int4", "uint4", "int32")
    if is_buffer(param, role, shape, dtype, quantized=quantized):
        return False
    if weight is not None:
        return True
    if _TORCH_STYLE.match(name):
        return True  # exporters keep a module parameter's own name; constants get generated ones
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return size > 1 and any(nodes[n].op_type in _ELEMENTWISE for n, _ in uses)


def _operand_role(node: Any, index: int, producers: dict[str, Any]) -> str | None:
    """Name the role of a learned element-wise operand: a norm's gamma/beta, or the bias after a MatMul/Conv."""
    parts = [p for p in re.split(r"[/.]", node.name or "") if p]
    if any(is_norm_name(p) for p in parts[:-1]):
        return {"Mul": "gamma", "Add": "beta", "Sub": "beta"}.get(node.op_type)
    if node.op_type == "Add":
        for i, name in enumerate(node.input):
            src = producers.get(name)
            # A Conv's output often reaches its bias through a Transpose, Slice or Squeeze.
            for _ in range(_PASS_DEPTH):
                if src is None or src.op_type not in _PASS_THROUGH | {"Slice"} or not src.input:
                    break
                src = producers.get(src.input[0])
            if i != index and src is not None and src.op_type in ("MatMul", "Conv", "Gemm", "ConvTranspose"):
                return "bias"
    return None


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _feeds(nodes: list[Any], node_layer: dict[int, str]) -> dict[str, tuple[str, ...]]:
    """Return, per layer, the layers reached from its outputs through parameterless nodes."""
    readers: dict[str, list[int]] = {}
    for n, node in enumerate(nodes):
        for name in node.input:
            readers.setdefault(name, []).append(n)
    found_by: dict[str, list[str]] = {}
    for n, layer in node_layer.items():
        found = found_by.setdefault(layer, [])
        seen = {n}
        todo = list(nodes[n].output)
        while todo:
            for m in readers.get(todo.pop(), []):
                if m in seen:
                    continue
                seen.add(m)
                target = node_layer.get(m)
                if target is None or target == layer:
                    todo.extend(nodes[m].output)
                elif target not in found:
                    found.append(target)
    return {layer: tuple(found) for layer, found in found_by.items()}
