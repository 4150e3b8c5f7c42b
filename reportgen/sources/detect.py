"""Pick the weight source for a path by what the file contains, not by its name."""

from __future__ import annotations

import dataclasses
import os
import struct
import zipfile
from pathlib import Path

from reportgen.errors import SourceError
from reportgen.sources.base import InitSpec, LayerView, WeightSource
from reportgen.sources.formats import FORMATS, FileFormat
from reportgen.sources.hdf5_safe import H5_ERRORS, SafeH5, signature_offset
from reportgen.sources.safety import check_path, numeric_only, open_regular

_ZIP_MAGIC = b"PK\x03\x04"
_SAFETENSORS_MAX_HEADER = 100 << 20


def open_path(path: Path | str, *, init: InitSpec | None = None) -> WeightSource:
    """Open a weights file or folder of any supported format; init fills kernels that declare none."""
    path = Path(path)
    check_path(path)
    opened = _open(path)
    try:
        source = numeric_only(opened)
    except BaseException:
        opened.close()
        raise
    if not any(layer.params for layer in source.layers()):
        # An empty report would read as "nothing wrong"; say that nothing was read instead.
        description = source.info.description
        source.close()
        raise SourceError(f"{path}: no weights found ({description})")
    if init is not None:
        source = _DefaultInit(source, init)
    return source


def detect_format(path: Path) -> FileFormat:
    """Name the format of path by its content: one of formats.FILE_FORMATS."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "tf-savedmodel"
        if sorted(path.glob("*.safetensors.index.json")) or sorted(path.glob("*.safetensors")):
            return "safetensors"
        raise SourceError(f"{path}: folder holds no saved_model.pb or safetensors weights")
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if signature_offset(head) is not None:
        try:
            return _hdf5_kind(path)
        except H5_ERRORS as exc:
            raise SourceError(f"{path}: damaged HDF5 data ({type(exc).__name__})") from None
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path)
    if _looks_safetensors(path, head):
        return "safetensors"
    if path.name.endswith(".safetensors.index.json"):
        return "safetensors"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pytorch"
    # The content itself is never shown: a config may name a file its author must not read.
    what = "an empty file" if not head else "no HDF5, zip, safetensors, ONNX or PyTorch signature"
    raise SourceError(f"{path}: not a weights file ({what})")


def _open(path: Path) -> WeightSource:
    fmt = FORMATS[detect_format(path)]
    try:
        source = fmt.open(path)
    except H5_ERRORS as exc:
        if not fmt.hdf5:
            raise
        # SafeH5 turns the errors of each call it makes into SourceErrors; this catches the rest of
        # what a damaged file makes h5py raise while the layers are listed.
        raise SourceError(f"{path}: damaged HDF5 data ({type(exc).__name__})") from None
    assert isinstance(source, WeightSource), fmt.opener
    return source


def _hdf5_kind(path: Path) -> FileFormat:
    with SafeH5(path) as h5:
        root = h5.root
        if h5.attr(root, "model_config") is not None or h5.attr(root, "layer_names") is not None:
            return "keras-h5"
        if h5.has(root, "model_weights"):
            group = h5.get("model_weights")
            if h5.attr(group, "layer_names") is not None:
                return "keras-h5"
    return "keras-weights-h5"


def _zip_kind(path: Path) -> FileFormat:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, RuntimeError, EOFError) as exc:
        raise SourceError(f"{path}: unreadable zip archive ({type(exc).__name__})") from None
    if "config.json" in names and ("model.weights.h5" in names or "model.weights.npz" in names):
        return "keras-archive"
    # PyTorch's zip format keeps its pickle at <archive name>/data.pkl.
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"
    raise SourceError(f"{path}: zip archive is neither a .keras model nor a PyTorch checkpoint")


def _looks_safetensors(path: Path, head: bytes) -> bool:
    """Tell from the length field and the header's first and last bytes; parse_header checks the rest."""
    if len(head) < 10:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    if size < 2 or size > _SAFETENSORS_MAX_HEADER or head[8:9] != b"{":
        return False
    try:
        if 8 + size > path.stat().st_size:
            return False
        with open(path, "rb") as fh:
            fh.seek(8 + max(0, size - 4096))
            tail = fh.read(min(size, 4096))
    except OSError:
        return False
    return tail.rstrip(b" ").endswith(b"}")


class _DefaultInit(LayerView):
    """Wrap a source so kernel tensors without a declared initializer report a configured one."""

    def __init__(self, inner: WeightSource, init: InitSpec) -> None:
        self.inner = inner
        self.info = inner.info
        self._layers = [
            dataclasses.replace(
                layer,
                params=tuple(
                    dataclasses.replace(p, init=init) if p.role == "kernel" and p.init is None else p
                    for p in layer.params
                ),
            )
            for layer in inner.layers()
        ]
