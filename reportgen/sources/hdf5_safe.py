"""Open HDF5 files read-only and reach their objects without following anything out of the file."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Self

import h5py
import numpy as np

from reportgen.errors import SourceError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Filters that ship inside HDF5/h5py itself. Anything else needs a plugin, i.e. a shared
# library HDF5 would load from HDF5_PLUGIN_PATH: native code chosen by the file.
BUILTIN_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "gzip",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
    h5py.h5z.FILTER_NBIT: "nbit",
    h5py.h5z.FILTER_SCALEOFFSET: "scaleoffset",
    h5py.h5z.FILTER_LZF: "lzf",
}
# Filters that only check or rearrange bytes; any other built-in one may compress.
_NON_COMPRESSING = {h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32}

# A compressed dataset may legitimately expand (zeros compress very well), so only a
# declared size beyond both this floor and this ratio to the stored bytes is refused. The floor
# bounds the work of a dataset that stores nothing (HDF5 fills it in): 64 KiB each, so a file's
# work stays within about 1000x its bytes (gzip itself reaches at most ~1030:1 on zeros).
COMPRESSED_FLOOR_BYTES = 64 << 10
MAX_EXPANSION = 1000

# What h5py raises for a damaged file: HDF5's own errors arrive as OSError, RuntimeError, KeyError or
# ValueError depending on the call, and odd type records as TypeError.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)

MAX_DEPTH = 64
MAX_OBJECTS = 1_000_000


def signature_offset(head: bytes) -> int | None:
    """Return where the HDF5 signature sits in head (0, 512, 1024, ...), or None."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= len(head):
        if head[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def is_hdf5(path: Path) -> bool:
    """Tell whether path starts with an HDF5 superblock (a user block before it allowed)."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    return signature_offset(head) is not None


def natural_key(name: str) -> list[object]:
    """Sort key that puts conv2d_2 before conv2d_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class SafeH5:
    """One HDF5 file opened read-only; every object handed out has passed the safety checks.

    label names the file in messages (the archive member for a file read from a zip); fileobj, with
    its size, reads the HDF5 bytes from a file object instead of path (a window onto a zip member).
    """

    def __init__(
        self, path: Path, label: str | None = None, fileobj: IO[bytes] | io.RawIOBase | None = None, size: int = 0
    ) -> None:
        self.path = Path(path)
        self.label = label or str(path)
        try:
            if fileobj is not None:
                self.file_size = size
                self.file = h5py.File(fileobj, "r")
            else:
                self.file_size = self.path.stat().st_size
                self.file = h5py.File(self.path, "r")
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: cannot open as HDF5 ({_short(exc)})") from None

    def close(self) -> None:
        """Close the file."""
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> h5py.Group:
        """Return the root group."""
        return self.file

    def attr(self, obj: h5py.HLObject, name: str, default: object = None) -> object:
        """Return an attribute with bytes decoded to str, or default."""
        try:
            if name not in obj.attrs:
                return default
            value = obj.attrs[name]
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {obj.name}: unreadable attribute {name!r} ({_short(exc)})") from None
        return _decode(value)

    def link_type(self, group: h5py.Group, name: str) -> int | None:
        """Return the h5l link type of a member, or None; the link itself is never followed."""
        # Low-level calls inspect the link record alone; nothing here resolves its target.
        if not name or "/" in name or name in (".", ".."):
            raise SourceError(f"{self.label}: {group.name}: invalid member name {name!r}")
        try:
            raw = name.encode("utf-8")
            if not group.id.links.exists(raw):
                return None
            return int(group.id.links.get_info(raw).type)
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {_join(group.name, name)}: unreadable link ({_short(exc)})") from None

    def has(self, group: h5py.Group, name: str) -> bool:
        """Tell whether group has a member called name, without following it."""
        return self.link_type(group, name) is not None

    def child(self, group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset:
        """Return a member of group after checking it is a hard link to a safe object."""
        where = _join(group.name, name)
        link = self.link_type(group, name)
        if link is None:
            raise SourceError(f"{self.label}: {where}: missing")
        if link == h5py.h5l.TYPE_SOFT:
            raise SourceError(f"{self.label}: {where}: soft link refused (links are not followed)")
        if link == h5py.h5l.TYPE_EXTERNAL:
            raise SourceError(f"{self.label}: {where}: external link to another file refused")
        if link != h5py.h5l.TYPE_HARD:
            raise SourceError(f"{self.label}: {where}: user-defined link refused")
        try:
            obj = group[name]
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {where}: unreadable object ({_short(exc)})") from None
        if isinstance(obj, h5py.Dataset):
            self.check_dataset(obj)
        elif not isinstance(obj, h5py.Group):
            raise SourceError(f"{self.label}: {where}: object of unsupported type {type(obj).__name__}")
        return obj

    def get(self, path: str) -> h5py.Group | h5py.Dataset:
        """Return the object at an absolute or root-relative path, checking every step."""
        obj: h5py.Group | h5py.Dataset = self.file
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(obj, h5py.Group):
                raise SourceError(f"{self.label}: {obj.name}: is a dataset, not a group")
            obj = self.child(obj, part)
        return obj

    def dataset(self, path: str) -> h5py.Dataset:
        """Return the checked dataset at path."""
        obj = self.get(path)
        if not isinstance(obj, h5py.Dataset):
            raise SourceError(f"{self.label}: {obj.name}: expected a dataset, found a group")
        return obj

    def members(self, group: h5py.Group) -> list[tuple[str, h5py.Group | h5py.Dataset]]:
        """Return the checked members of group in natural name order."""
        try:
            names = list(group.keys())
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {group.name}: unreadable group ({_short(exc)})") from None
        return [(name, self.child(group, name)) for name in sorted(names, key=natural_key)]

    def walk(self, group: h5py.Group | None = None) -> Iterator[tuple[str, h5py.Group | h5py.Dataset]]:
        """Yield (path, object) for every object below group, depth first in natural name order."""
        seen: set[object] = set()
        count = 0

        def visit(grp: h5py.Group, depth: int) -> Iterator[tuple[str, h5py.Group | h5py.Dataset]]:
            nonlocal count
            if depth > MAX_DEPTH:
                raise SourceError(f"{self.label}: {grp.name}: groups nested deeper than {MAX_DEPTH}")
            for _name, obj in self.members(grp):
                count += 1
                if count > MAX_OBJECTS:
                    raise SourceError(f"{self.label}: more than {MAX_OBJECTS} objects")
                yield obj.name, obj
                if isinstance(obj, h5py.Group):
                    # Hard links can make a cycle; each group is entered once.
                    key = _object_key(obj)
                    if key in seen:
                        continue
                    seen.add(key)
                    yield from visit(obj, depth + 1)

        start = group if group is not None else self.file
        seen.add(_object_key(start))
        yield from visit(start, 0)

    def check_dataset(self, ds: h5py.Dataset) -> None:
        """Refuse a dataset that reads other files, needs a filter plugin, or declares bytes it lacks."""
        where = f"{self.label}: {ds.name}"
        try:
            external = ds.external
            virtual = ds.is_virtual
        except H5_ERRORS as exc:
            raise SourceError(f"{where}: unreadable storage layout ({_short(exc)})") from None
        if external:
            raise SourceError(f"{where}: external-storage dataset refused (its data lives in other files)")
        if virtual:
            raise SourceError(f"{where}: virtual dataset refused (it maps data from other files)")
        try:
            plist = ds.id.get_create_plist()
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            declared = math.prod(ds.shape or ()) * ds.dtype.itemsize if ds.shape is not None else 0
            stored = ds.id.get_storage_size()
        except H5_ERRORS as exc:
            raise SourceError(f"{where}: unreadable dataset header ({_short(exc)})") from None
        for fid in filters:
            if fid not in BUILTIN_FILTERS:
                raise SourceError(f"{where}: filter id {fid} needs an HDF5 plugin; refused")
        compressed = any(fid not in _NON_COMPRESSING for fid in filters)
        if declared == 0:
            return
        if not compressed:
            if stored < declared or stored > self.file_size:
                raise SourceError(
                    f"{where}: declares {declared} bytes but stores {stored} in a {self.file_size}-byte file"
                )
        elif declared > COMPRESSED_FLOOR_BYTES and (
            declared > MAX_EXPANSION * stored or declared > MAX_EXPANSION * self.file_size
        ):
            raise SourceError(
                f"{where}: declares {declared} bytes from {stored} compressed bytes; refused as a likely bomb"
            )

    def read(self, ds: h5py.Dataset) -> np.ndarray:
        """Return a checked dataset's whole contents."""
        try:
            return _as_stored(ds, ds[()])
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {ds.name}: read failed ({_short(exc)})") from None

    def iter_slabs(self, ds: h5py.Dataset, max_elems: int) -> Iterator[np.ndarray]:
        """Yield the dataset flattened in C order, in 1-D pieces of at most max_elems elements."""
        shape = tuple(ds.shape or ())
        max_elems = max(1, int(max_elems))
        if len(shape) == 0 or math.prod(shape) <= max_elems:
            yield self.read(ds).reshape(-1)
            return
        # Split on the first axis whose trailing block fits, so each read is one hyperslab.
        axis = next(k for k in range(len(shape)) if math.prod(shape[k + 1 :]) <= max_elems)
        step = max(1, max_elems // math.prod(shape[axis + 1 :]))
        try:
            for lead in np.ndindex(*shape[:axis]):
                for start in range(0, shape[axis], step):
                    block = ds[(*lead, slice(start, min(start + step, shape[axis])))]
                    yield _as_stored(ds, block).reshape(-1)
        except H5_ERRORS as exc:
            raise SourceError(f"{self.label}: {ds.name}: read failed ({_short(exc)})") from None

    def dtype_name(self, ds: h5py.Dataset) -> str:
        """Return the numpy-style dtype name of the values read() returns."""
        if _is_bfloat16(ds):
            return "bfloat16"
        dt = ds.dtype
        # Types statistics cannot use get a plain name: the report lists them as non-numeric.
        if h5py.check_string_dtype(dt) is not None:
            return "string"
        if h5py.check_ref_dtype(dt) is not None:
            return "reference"
        if h5py.check_vlen_dtype(dt) is not None:
            return "variable-length"
        if dt.names:
            return "compound"
        if dt.subdtype is not None:
            return "array"
        if dt.kind == "V":
            return "opaque"
        return str(dt)


def _is_bfloat16(ds: h5py.Dataset) -> bool:
    # Keras 3 marks bfloat16 variables with a dtype attribute; HDF5 has no such type.
    try:
        return ds.dtype.itemsize == 2 and _decode(ds.attrs.get("dtype")) == "bfloat16"
    except H5_ERRORS:
        return False


def _as_stored(ds: h5py.Dataset, values: object) -> np.ndarray:
    arr = np.asarray(values)
    if _is_bfloat16(ds):
        import ml_dtypes

        arr = arr.view(ml_dtypes.bfloat16)
    return arr


def _decode(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _decode(value.item())
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _object_key(obj: h5py.HLObject) -> object:
    try:
        info = h5py.h5o.get_info(obj.id)
    except H5_ERRORS as exc:
        raise SourceError(f"{obj.file.filename}: {obj.name}: unreadable object header ({_short(exc)})") from None
    return (info.fileno, info.addr)


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
