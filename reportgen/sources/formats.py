"""The weight formats reportgen reads: one registry of names, openers and what workers can do with each.

A format's name is what SourceInfo.format, stats.json and `reportgen inspect` show. Content sniffing
(detect.py) returns one of FILE_FORMATS; opening, worker reopening and the framework defaults all ask
this registry, so a format added here is known everywhere and one missing here fails the type check.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from pathlib import Path

# Formats opened from a path, as detect.py names them after reading the content.
FileFormat = Literal["keras-weights-h5", "keras-h5", "keras-archive", "tf-savedmodel", "safetensors", "pytorch", "onnx"]
# Formats of models that exist only in this process (built by Keras or PyTorch, or handed over as arrays).
MemoryFormat = Literal["keras-application", "keras-model", "pytorch-module", "pytorch-state-dict", "arrays"]
FormatName = Literal[FileFormat, MemoryFormat]
FILE_FORMATS: tuple[FileFormat, ...] = get_args(FileFormat)

Framework = Literal["pytorch", "keras"]


@dataclass(frozen=True)
class WeightFormat:
    """One weight format: its name, how to open it, and whether worker processes can reopen it."""

    name: FormatName
    display: str  # what people call it
    opener: str | None  # "module:Class" whose constructor takes the path; None for in-memory models
    reopenable: bool  # a worker process can open it again from its files alone
    framework: Framework | None = None  # whose default initializers the format alone implies
    hdf5: bool = False  # read with h5py: errors h5py raises while listing layers mean a damaged file

    def open(self, path: Path) -> object:
        """Open path with this format's source class (imported only now: TensorFlow and torch are slow)."""
        if self.opener is None:
            raise ValueError(f"{self.name} models exist only in memory and cannot be opened from a path")
        module, _, cls = self.opener.partition(":")
        return getattr(importlib.import_module(module), cls)(path)


_SRC = "reportgen.sources."
FORMATS: dict[FormatName, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat(
            "keras-weights-h5", "Keras 3 weights file", _SRC + "keras_h5:KerasWeightsSource", True, "keras", True
        ),
        WeightFormat(
            "keras-h5", "Keras legacy HDF5 file", _SRC + "keras_legacy:KerasLegacyH5Source", True, "keras", True
        ),
        WeightFormat("keras-archive", "Keras archive", _SRC + "keras_h5:KerasArchiveSource", True, "keras", True),
        # Reopening needs TensorFlow in every worker, whose start-up costs more than threads save.
        WeightFormat("tf-savedmodel", "TensorFlow SavedModel", _SRC + "savedmodel:SavedModelSource", False, "keras"),
        WeightFormat("safetensors", "safetensors", _SRC + "safetensors_file:SafetensorsSource", True),
        WeightFormat("pytorch", "PyTorch checkpoint", _SRC + "torch_file:TorchSource", True, "pytorch"),
        WeightFormat("onnx", "ONNX model", _SRC + "onnx_file:OnnxSource", True),
        WeightFormat("keras-application", "keras.applications model", None, False, "keras"),
        WeightFormat("keras-model", "Keras model in memory", None, False, "keras"),
        # In-memory PyTorch sources set each tensor's default initializer themselves.
        WeightFormat("pytorch-module", "PyTorch module in memory", None, False),
        WeightFormat("pytorch-state-dict", "PyTorch state dict in memory", None, False),
        WeightFormat("arrays", "NumPy arrays", None, False),
    )
}
# Lookups by any string (a stats.json, a test source): a name not registered here is simply unknown.
_BY_NAME: dict[str, WeightFormat] = {f.name: f for f in FORMATS.values()}


def reopenable(name: str) -> bool:
    """Tell whether worker processes can reopen a source of this format from its files."""
    fmt = _BY_NAME.get(name)
    return fmt is not None and fmt.reopenable


def in_memory(name: str) -> bool:
    """Tell whether a format names a model that exists only in this process."""
    fmt = _BY_NAME.get(name)
    return fmt is not None and fmt.opener is None


def framework_of(name: str) -> Framework | None:
    """Return the framework whose default initializers a format implies on its own, or None."""
    fmt = _BY_NAME.get(name)
    return fmt.framework if fmt is not None else None
