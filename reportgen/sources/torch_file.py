"""Read PyTorch state dicts (.pt, .pth, .bin) with torch's weights-only unpickler, never a full unpickle."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.naming import FlatTensor, group_layers
from reportgen.sources.safetensors_file import iter_file_chunks

MIN_TORCH = (2, 6)
EXTRA_HINT = "pip install 'reportgen[torch]'"

# Checkpoint keys that hold the model's state dict one level down, most specific first.
_WRAPPER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "params",
    "weights",
    "ema",
)
# Wrappers nest (Lightning's {"model": {"state_dict": ...}}); deeper than this is not a checkpoint layout.
_MAX_WRAPPER_DEPTH = 4
# Checkpoint entries that hold training state, never model weights.
_TRAINING_STATE = {"optimizer", "optimizer_states", "optim", "scheduler", "lr_scheduler", "lr_schedulers", "scaler"}
# Nested state dicts ({"encoder": {...}}) deeper than this are refused rather than walked.
_MAX_NESTING = 32
# How many names of what was not read the description lists.
_NOT_READ_SHOWN = 5


def _import_torch(path: Path) -> Any:
    """Import torch lazily and insist on a version whose weights-only unpickler is trusted."""
    try:
        import torch
    except ImportError:
        raise SourceError(f"{path}: reading PyTorch files needs the optional extra: {EXTRA_HINT}") from None
    found = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if found < MIN_TORCH:
        raise SourceError(f"{path}: reading PyTorch files safely needs torch >= 2.6 (found {torch.__version__})")
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


def _is_tensor(value: Any) -> bool:
    return type(value).__name__ in ("Tensor", "Parameter") and hasattr(value, "numpy")


def _unwrap(obj: Any) -> tuple[Any, list[str], list[str]]:
    """Descend through wrapper keys to the mapping that holds tensors; return it, the keys taken, what was left."""
    keys: list[str] = []
    left: list[str] = []
    while isinstance(obj, Mapping) and len(keys) < _MAX_WRAPPER_DEPTH:
        if any(_is_tensor(v) for v in obj.values()):
            break
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj.get(k)), None)
        if key is None:
            break
        where = "".join(f"[{k!r}]" for k in keys)
        left += [f"checkpoint{where}[{k!r}]" for k in obj if k != key]
        keys.append(key)
        obj = obj[key]
    return obj, keys, left


def _flatten(
    obj: Mapping[Any, Any],
    prefix: str,
    container: str,
    path: Path,
    out: dict[str, Any],
    left: list[str],
    depth: int = 0,
) -> None:
    """Collect tensors under dotted names (nested mappings become name parts); list what is not a tensor."""
    if depth and not all(isinstance(k, str) for k in obj):
        # Optimizer state is keyed by parameter number, not by name: not model weights.
        left.append(f"{container}[{prefix.rstrip('.')!r}] (a mapping with non-string keys)")
        return
    for name, value in obj.items():
        if not isinstance(name, str):
            raise SourceError(f"{path}: {container}: key {name!r} is not a string")
        if not depth and name in _TRAINING_STATE:
            left.append(f"{container}[{name!r}] (training state)")
        elif _is_tensor(value):
            out[prefix + name] = value
        elif isinstance(value, Mapping) and value:
            if depth >= _MAX_NESTING:
                raise SourceError(f"{path}: {container}[{prefix + name!r}]: mappings nested deeper than {_MAX_NESTING}")
            _flatten(value, f"{prefix}{name}.", container, path, out, left, depth + 1)
        else:
            left.append(f"{container}[{prefix + name!r}] (a {type(value).__name__})")


def _state_dict(obj: Any, path: Path) -> tuple[dict[str, Any], str, list[str]]:
    """Return (name -> tensor, where it was found, what was not read) from a loaded checkpoint."""
    if not isinstance(obj, Mapping):
        kind = type(obj).__name__
        raise SourceError(f"{path}: not a state dict: the file holds a {kind}, not a mapping of tensors")
    if not obj:
        raise SourceError(f"{path}: the state dict is empty")
    inner, keys, left = _unwrap(obj)
    container = "checkpoint" + "".join(f"[{k!r}]" for k in keys) if keys else "state dict"
    out: dict[str, Any] = {}
    _flatten(inner, "", container, path, out, left)
    if not out:
        shown = "; ".join(left[:_NOT_READ_SHOWN])
        raise SourceError(f"{path}: no tensors in the {container} (not read: {shown})")
    # DataParallel saves every name under 'module.'; the layer names read better without it.
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out, container, left


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
        self._mmap = zipfile.is_zipfile(self.path)
        tensors, container, left = _state_dict(_load(self._torch, self.path), self.path)
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
        kind = "zip" if self._mmap else "legacy pickle"
        description = f"{len(tensors)} tensors from a PyTorch {kind} file ({container})"
        if left:
            more = f" and {len(left) - _NOT_READ_SHOWN} more" if len(left) > _NOT_READ_SHOWN else ""
            description += f"; not read: {', '.join(left[:_NOT_READ_SHOWN])}{more}"
        self.info = SourceInfo(
            format="pytorch",
            description=description,
            files=(self.path,),
            extra={"torch": str(self._torch.__version__)},
        )

    def layers(self) -> list[LayerInfo]:
        """Return every layer in state-dict order."""
        return list(self._layers)

    def _tensor(self, ref: TensorRef) -> Any:
        try:
            return self._tensors[ref.key]
        except KeyError:
            raise SourceError(f"{self.path}: tensor {ref.key!r}: not in this state dict") from None

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor as a NumPy array (backed by the file's memory map for zip files)."""
        return to_numpy(self._torch, self._tensor(ref), f"{self.path}: tensor {ref.key!r}")

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield the tensor flattened; a memory-mapped tensor is read from the file chunk by chunk."""
        # Pages of torch's memory map stay resident once touched, so a 2 GB tensor walked through
        # the map costs 2 GB of RSS; reading its bytes with pread keeps memory near one chunk.
        tensor = self._tensor(ref)
        arr = self.read(ref)
        offset = self._file_offset(tensor, arr.nbytes) if self._mmap else None
        if offset is None:
            yield from super().iter_chunks(ref, max_elems)
            return
        yield from iter_file_chunks(self.path, offset, arr.size, arr.dtype, max_elems, ref.key)

    def _file_offset(self, tensor: Any, nbytes: int) -> int | None:
        """Return where a mapped tensor's bytes start in the file, or None when that cannot be shown."""
        if nbytes == 0 or tensor.is_quantized or not tensor.is_contiguous():
            return None
        addr = int(tensor.data_ptr())
        target = str(self.path.resolve())
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()
        except OSError:
            return None
        for line in lines:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or parts[5].strip() != target:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= addr and addr + nbytes <= end:
                offset = addr - start + int(parts[2], 16)
                return offset if offset + nbytes <= self.path.stat().st_size else None
        return None

    def close(self) -> None:
        """Drop the tensors so the file's memory map can be released."""
        self._tensors = {}
