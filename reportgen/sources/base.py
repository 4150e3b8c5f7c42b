"""What every weights source yields: layers, their tensors, and a way to read them as data."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.sources.formats import FormatName

# Chunk size used when a tensor is streamed: 1 Mi elements keeps float64 scratch at 8 MiB.
DEFAULT_CHUNK_ELEMS = 1 << 20


@dataclass(frozen=True)
class InitSpec:
    """The initializer a tensor was drawn from, as declared by a file or a config."""

    kind: str  # canonical snake_case name: glorot_uniform, he_normal, zeros, pytorch_default, ...
    params: tuple[tuple[str, Any], ...] = ()  # e.g. (("scale", 2.0), ("mode", "fan_in"))
    origin: str = "keras-config"  # keras-config | config | framework-default

    def param(self, name: str, default: Any = None) -> Any:
        """Return one parameter of the initializer, or default."""
        for key, value in self.params:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class TensorRef:
    """One named tensor of a layer, described without reading its values."""

    key: str  # address inside the source (HDF5 path, safetensors name, ...); unique per source
    name: str  # parameter name within the layer: kernel, bias, weight, gamma, ...
    role: str  # one of vocab.ROLES
    shape: tuple[int, ...]
    dtype: str  # numpy-style name: float32, float16, bfloat16, float8_e4m3fn, int8, bool, ...
    init: InitSpec | None = None
    layout: str = "keras"  # keras: (..., in, out); torch: (out, in, ...)
    quant: tuple[tuple[str, float], ...] = ()  # scale / zero_point recorded beside an integer tensor
    # False for tensors that training does not update: buffers (running statistics, position ids),
    # integer index vectors, graph constants. They are listed and measured but get no verdict or scale alert.
    trainable: bool = True

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model in flat order, with its parameters."""

    name: str
    class_name: str  # Conv2D, Dense, BatchNormalization, ... ("Unknown" when nothing says)
    index: int  # position in the model's flat layer list (Python indexing applies)
    params: tuple[TensorRef, ...] = ()
    type_source: str = "config"  # config | inferred (guessed from tensor shapes)
    path: str = ""  # nesting path inside the file or model, e.g. "block1/layers/conv2d"
    output_shape: tuple[int | None, ...] | None = None
    feeds: tuple[str, ...] = ()  # names of the layers that consume this layer's output, when known
    attrs: tuple[tuple[str, Any], ...] = ()  # selected layer config values (use_bias, activation, ...)

    @property
    def param_count(self) -> int:
        """Number of scalar parameters in the layer."""
        return sum(p.size for p in self.params)

    def attr(self, name: str, default: Any = None) -> Any:
        """Return one layer attribute, or default."""
        for key, value in self.attrs:
            if key == name:
                return value
        return default

    def param(self, name_or_role: str) -> TensorRef | None:
        """Return the parameter with this name, or else the first with this role."""
        for p in self.params:
            if p.name == name_or_role:
                return p
        for p in self.params:
            if p.role == name_or_role:
                return p
        return None


@dataclass
class SourceInfo:
    """Where a model's weights came from, for the report's provenance table."""

    format: FormatName  # one of formats.FORMATS
    description: str  # one human line: "keras.applications.VGG16, random initialisation"
    files: tuple[Path, ...] = ()  # input files whose hashes go in the manifest
    trained: bool | None = None  # True/False when the source says so; None when unknown
    extra: dict[str, str] = field(default_factory=dict)


def map_bytes(file: Path, dtype: np.dtype, offset: int, nbytes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Map nbytes of file at offset read-only as an array of shape; raise OSError/ValueError if it can't."""
    if nbytes == 0:
        return np.zeros(shape, dtype=dtype)
    count = nbytes // dtype.itemsize
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=(count,)).reshape(shape)


class WeightSource(ABC):
    """A model's weights, readable one tensor at a time without running code from the file."""

    info: SourceInfo

    @abstractmethod
    def layers(self) -> list[LayerInfo]:
        """Return every layer in flat order, parameterless layers included where known."""

    @abstractmethod
    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the whole tensor in its stored dtype (a memory map where possible)."""

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield the tensor flattened, in 1-D pieces of at most max_elems elements."""
        flat = np.asarray(self.read(ref)).reshape(-1)
        for start in range(0, flat.size, max_elems):
            yield flat[start : start + max_elems]

    def close(self) -> None:
        """Release open files."""

    def __enter__(self) -> WeightSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LayerView(WeightSource):
    """Another source's tensors under a changed list of layers (filtered, or with initializers filled in)."""

    inner: WeightSource
    _layers: list[LayerInfo]

    def layers(self) -> list[LayerInfo]:
        """Return the changed list of layers."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor from the inner source."""
        return self.inner.read(ref)

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield chunks from the inner source."""
        return self.inner.iter_chunks(ref, max_elems)

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()
