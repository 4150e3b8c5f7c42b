"""Read PyTorch state dicts (.pt, .pth, .bin) with torch's weights-only unpickler, never a full unpickle."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.naming import FlatTensor, group_layers

MIN_TORCH = (2, 6)
EXTRA_HINT = "pip install 'reportgen[torch]'"

# Checkpoint wrappers that hold the state dict one level down.
_WRAPPER_KEYS = ("state_dict", "model")


def _import_torch(path: Path) -> Any:
    """Import torch lazily and insist on a version whose weights-only unpickler is trusted."""
    try:
        import torch
    except ImportError:
        raise SourceError(f"{path}: reading PyTorch files needs the optional extra: {EXTRA_HINT}") from None
    found = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if found < MIN_TORCH:
        raise SourceError(
            f"{path}: reading PyTorch files safely needs torch >= 2.6 (found {torch.__version__})"
        )
    return torch


def _reason(exc: BaseException) -> str:
    """Pick the line of torch's refusal that names what was refused, not its advice to disable the check."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(("Weights only load failed", "Check the documentation")):
            return line
    return lines[0] if lines else type(exc).__name__


def _load(torch: Any, path: Path) -> Any:
    """Call torch.load with weights_only=True on every path; mmap only where the file format allows it."""
    # mmap needs the zip format; a legacy pickle is read into memory, still weights-only.
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)
    except pickle.UnpicklingError as exc:
        why = f"weights_only load failed: {_reason(exc)}"
        raise SourceError(f"{path}: refused: the file holds objects other than tensors ({why})") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError, ... for bad files
        raise SourceError(f"{path}: cannot read as a PyTorch file ({_reason(exc)})") from None


def _state_dict(obj: Any, path: Path) -> tuple[dict[str, Any], str]:
    """Return (name -> tensor, where it was found) from a loaded checkpoint."""
    container = "state dict"
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj, container = inner, f"checkpoint[{key!r}]"
                break
    if not isinstance(obj, Mapping):
        kind = type(obj).__name__
        raise SourceError(f"{path}: not a state dict: the file holds a {kind}, not a mapping of tensors")
    if not obj:
        raise SourceError(f"{path}: the state dict is empty")
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise SourceError(f"{path}: {container}: key {name!r} is not a string")
        if type(value).__name__ not in ("Tensor", "Parameter") or not hasattr(value, "numpy"):
            raise SourceError(f"{path}: {container}[{name!r}]: a {type(value).__name__}, not a tensor")
        out[name] = value
    # DataParallel saves every name under 'module.'; the layer names read better without it.
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out, container


def to_numpy(torch: Any, tensor: Any, where: str) -> np.ndarray:
    """Return a tensor's values as a NumPy array, sharing memory where NumPy has the dtype."""
    t = tensor.detach()
    if t.layout != torch.strided or t.device.type != "cpu":
        raise SourceError(f"{where}: unsupported tensor ({t.layout}, {t.device.type})")
    if t.is_quantized:
        return t.int_repr().numpy()
    # NumPy lacks these dtypes; reinterpret the same bytes as their ml_dtypes twins.
    as_bits = {
        torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
        torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn),
        torch.float8_e5m2: (torch.uint8, ml_dtypes.float8_e5m2),
    }
    if t.dtype in as_bits:
        bits, target = as_bits[t.dtype]
        return t.view(bits).numpy().view(target)
    try:
        return t.resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError) as exc:
        raise SourceError(f"{where}: dtype {t.dtype} has no NumPy equivalent ({exc})") from None


def numpy_dtype_name(torch: Any, tensor: Any, where: str) -> str:
    """Return the NumPy dtype name that to_numpy gives for this tensor, without touching its data."""
    if tensor.is_quantized:
        plain = {torch.quint8: torch.uint8, torch.qint32: torch.int32}.get(tensor.dtype, torch.int8)
        probe = torch.empty(0, dtype=plain)
    else:
        probe = torch.empty(0, dtype=tensor.dtype)
    return str(to_numpy(torch, probe, where).dtype)


class TorchSource(WeightSource):
    """Weights from a PyTorch state dict loaded by torch's weights-only unpickler."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        self._torch = _import_torch(self.path)
        tensors, container = _state_dict(_load(self._torch, self.path), self.path)
        self._tensors = tensors
        flat = []
        for name, t in tensors.items():
            quant: tuple[tuple[str, float], ...] = ()
            per_tensor = (self._torch.per_tensor_affine, self._torch.per_tensor_symmetric)
            if t.is_quantized and t.qscheme() in per_tensor:
                quant = (("scale", float(t.q_scale())), ("zero_point", float(t.q_zero_point())))
            dtype = numpy_dtype_name(self._torch, t, f"{self.path}: tensor {name!r}")
            flat.append(FlatTensor(name, tuple(int(d) for d in t.shape), dtype, quant))
        # A state dict lists parameters in module registration order, which is the model's order.
        self._layers = group_layers(flat, layout="torch", order="appearance")
        kind = "zip" if zipfile.is_zipfile(self.path) else "legacy pickle"
        self.info = SourceInfo(
            format="pytorch",
            description=f"{len(tensors)} tensors from a PyTorch {kind} file ({container})",
            files=(self.path,),
            extra={"torch": str(self._torch.__version__)},
        )

    def layers(self) -> list[LayerInfo]:
        """Return every layer in state-dict order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor as a NumPy array (backed by the file's memory map for zip files)."""
        try:
            tensor = self._tensors[ref.key]
        except KeyError:
            raise SourceError(f"{self.path}: tensor {ref.key!r}: not in this state dict") from None
        return to_numpy(self._torch, tensor, f"{self.path}: tensor {ref.key!r}")

    def close(self) -> None:
        """Drop the tensors so the file's memory map can be released."""
        self._tensors = {}
