"""Read .safetensors files (single, sharded by an index, or a folder) by parsing the header as data."""

from __future__ import annotations

import itertools
import math
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import ml_dtypes
import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, LayerInfo, SourceInfo, TensorRef, WeightSource, map_bytes
from reportgen.sources.naming import FlatTensor, group_layers, quant_groups
from reportgen.sources.safety import check_path, load_json, open_regular

# The format's own limit (safetensors refuses headers above 100 MB).
MAX_HEADER_BYTES = 100_000_000
MAX_INDEX_BYTES = 64 << 20
MAX_METADATA_ITEMS = 32
MAX_METADATA_CHARS = 200
# Work per tensor (listing, statistics, report rows) does not shrink with its size, so a header of
# many empty tensors would cost far more than the bytes the file stores. Beyond this many tensors a
# file must store at least MIN_BYTES_PER_TENSOR on average; real checkpoints store megabytes each.
FREE_TENSORS = 10_000
MIN_BYTES_PER_TENSOR = 64

DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
    "C64": np.dtype(np.complex64),
}
if hasattr(ml_dtypes, "float8_e8m0fnu"):
    DTYPES["F8_E8M0"] = np.dtype(ml_dtypes.float8_e8m0fnu)

# Dtypes whose values are codes that a scale (and zero point) turn into real numbers.
QUANTIZED_DTYPES = {"int8", "uint8", "int16", "int32", "float8_e4m3fn", "float8_e5m2"}

# Metadata "format" values written by frameworks that store kernels as (..., in, out).
_KERAS_LAYOUT_FORMATS = {"tf", "keras", "flax", "jax"}


@dataclass(frozen=True)
class Entry:
    """Where one tensor's bytes lie in one file."""

    file: Path
    start: int  # absolute byte offset of the first element
    nbytes: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class Header:
    """A parsed and checked safetensors header."""

    path: Path
    entries: dict[str, Entry]  # in the order the header lists them
    metadata: dict[str, str]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_header(path: Path) -> Header:
    """Read and check a safetensors header: sizes, dtypes, offsets inside the file, no overlaps."""
    try:
        size = check_path(path).st_size
        with os.fdopen(open_regular(path), "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise SourceError(f"{path}: truncated: {size} bytes, too short for a safetensors header")
            n = int.from_bytes(head, "little")
            # The length field is not quoted: in a file that is not safetensors it is 8 bytes of content.
            if n > MAX_HEADER_BYTES:
                raise SourceError(f"{path}: not a safetensors file (header length field above {MAX_HEADER_BYTES})")
            if 8 + n > size:
                raise SourceError(f"{path}: truncated: header length field exceeds the file size {size}")
            raw = fh.read(n)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    data_size = size - 8 - n
    # Counted on the bytes before parsing (an upper bound: a name may contain the word), so a header
    # of a million empty tensors is refused in milliseconds instead of parsed for seconds.
    _check_tensor_count(path, raw.count(b'"data_offsets"'), data_size)
    doc = load_json(raw, f"{path}: header", hook=_no_duplicates, max_depth=None)
    if not isinstance(doc, dict):
        raise SourceError(f"{path}: header is not a JSON object")
    meta_raw = doc.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict) or not all(isinstance(v, str) for v in meta_raw.values()):
        raise SourceError(f"{path}: __metadata__ must map names to strings")
    data_start = 8 + n
    entries: dict[str, Entry] = {}
    spans: list[tuple[int, int, str]] = []
    for name, spec in doc.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(spec, dict):
            raise SourceError(f"{where}: entry is not a JSON object")
        code, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not isinstance(code, str) or code not in DTYPES:
            raise SourceError(f"{where}: unknown dtype {code!r}")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise SourceError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)):
            raise SourceError(f"{where}: data_offsets must be two non-negative integers, got {offsets!r}")
        begin, end = offsets
        dtype = DTYPES[code]
        expected = math.prod(shape) * dtype.itemsize
        if end < begin:
            raise SourceError(f"{where}: bad offsets: end {end} before begin {begin}")
        if end - begin != expected:
            stored = end - begin
            raise SourceError(
                f"{where}: bad offsets: {stored} bytes stored, shape {tuple(shape)} {code} needs {expected}"
            )
        if end > data_size:
            raise SourceError(
                f"{where}: bad offsets: data ends at byte {data_start + end}, beyond the file size {size}"
            )
        entries[name] = Entry(path, data_start + begin, end - begin, tuple(shape), dtype)
        if end > begin:
            spans.append((begin, end, name))
    spans.sort()
    for (_, prev_end, prev), (begin, _, name) in itertools.pairwise(spans):
        if begin < prev_end:
            raise SourceError(f"{path}: tensor {name!r}: bad offsets: overlaps tensor {prev!r}")
    return Header(path, entries, dict(meta_raw))


def _check_tensor_count(path: Path, count: int, data_size: int) -> None:
    """Refuse a header listing many more tensors than the file's data could hold."""
    if count > FREE_TENSORS and count * MIN_BYTES_PER_TENSOR > data_size:
        raise SourceError(
            f"{path}: header lists {count} tensors for {data_size} bytes of data; refused (beyond "
            f"{FREE_TENSORS} tensors a file must store {MIN_BYTES_PER_TENSOR} bytes per tensor on average)"
        )


def _check_with_library(path: Path) -> None:
    """Let the safetensors library validate the header too, so both readers agree on the file."""
    try:
        from safetensors import safe_open
    except ImportError:
        return
    try:
        with safe_open(str(path), framework="numpy") as fh:
            fh.keys()
    except Exception as exc:  # the library raises its own error types
        raise SourceError(f"{path}: rejected by safetensors ({str(exc).splitlines()[0]})") from None


def _roots(folder: Path) -> tuple[Path, ...]:
    """Return where a shard may resolve to: the index's folder, and a Hugging Face cache repo's blobs.

    The Hugging Face cache keeps each file of a snapshot (models--ORG--NAME/snapshots/REV/...) as a
    symbolic link into the same repository's blobs folder.
    """
    real = folder.resolve()
    for parent in (real, *real.parents):
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
            return real, parent.parent.parent / "blobs"
    return (real,)


def _inside(folder: Path, relative: str, index: Path, field: str) -> Path:
    """Resolve a path named by an index file and refuse it unless it stays in the index's folder."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative or ":" in relative:
        raise SourceError(f"{index}: {field}: refused shard path {relative!r} (must stay inside {folder})")
    target = (folder / pure).resolve()
    if not any(target.is_relative_to(root) for root in _roots(folder)):
        raise SourceError(f"{index}: {field}: refused shard path {relative!r} (leads outside {folder})")
    return target


def _read_index(index: Path) -> tuple[list[Path], dict[str, Path]]:
    """Return the shard files an index names and which shard holds each tensor."""
    try:
        if check_path(index).st_size > MAX_INDEX_BYTES:
            raise SourceError(f"{index}: index file larger than {MAX_INDEX_BYTES} bytes")
        with os.fdopen(open_regular(index), "rb") as fh:
            raw = fh.read(MAX_INDEX_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"{index}: cannot read ({exc.strerror or exc})") from None
    doc = load_json(raw, f"{index}: index")
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise SourceError(f"{index}: weight_map: missing or not a mapping of tensor names to shard files")
    shards: dict[str, Path] = {}
    where: dict[str, Path] = {}
    for name, rel in weight_map.items():
        if not isinstance(rel, str):
            raise SourceError(f"{index}: weight_map[{name!r}]: shard file must be a string")
        if rel not in shards:
            shards[rel] = _inside(index.parent, rel, index, f"weight_map[{name!r}]")
        where[name] = shards[rel]
    return list(shards.values()), where


def _resolve_inputs(path: Path) -> tuple[list[Path], dict[str, Path] | None, Path | None]:
    """Return (shard files, tensor->shard from an index or None, the index file or None)."""
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if len(indexes) > 1:
            names = ", ".join(p.name for p in indexes)
            raise SourceError(f"{path}: several safetensors index files ({names}); name one of them")
        if indexes:
            return (*_read_index(indexes[0]), indexes[0])
        files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
        if not files:
            raise SourceError(f"{path}: folder holds no .safetensors file or index")
        return files, None, None
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.name.endswith(".json"):
        return (*_read_index(path), path)
    return [path], None, None


class SafetensorsSource(WeightSource):
    """Weights from safetensors files, read without any code from the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        files, where, index = _resolve_inputs(self.path)
        self._entries: dict[str, Entry] = {}
        metadata: dict[str, str] = {}
        for file in files:
            if not file.is_file():
                raise SourceError(f"{index or file}: shard {file.name!r} does not exist")
            header = parse_header(file)
            _check_with_library(file)
            for name, entry in header.entries.items():
                if name in self._entries:
                    other = self._entries[name].file.name
                    raise SourceError(f"{file}: tensor {name!r}: also stored in {other}")
                self._entries[name] = entry
            for key, value in header.metadata.items():
                metadata.setdefault(key, value)
        if where is not None:
            for name, shard in where.items():
                held = self._entries.get(name)
                if held is None or held.file != shard:
                    raise SourceError(f"{index}: weight_map[{name!r}]: tensor not found in {shard.name}")
        self._layers = self._build_layers(metadata)
        description = f"{len(self._entries)} tensors" + (f" in {len(files)} shards" if len(files) > 1 else "")
        extra = {
            k[:MAX_METADATA_CHARS]: v[:MAX_METADATA_CHARS] for k, v in sorted(metadata.items())[:MAX_METADATA_ITEMS]
        }
        self.info = SourceInfo(
            format="safetensors",
            description=description,
            files=tuple(([index] if index else []) + files),
            extra=extra,
        )

    def _build_layers(self, metadata: dict[str, str]) -> list[LayerInfo]:
        flat = [FlatTensor(name, e.shape, str(e.dtype)) for name, e in self._entries.items()]
        keras_names = any(name.rpartition(".")[2] == "kernel" for name in self._entries)
        layout = "keras" if metadata.get("format") in _KERAS_LAYOUT_FORMATS or keras_names else "torch"
        groups = quant_groups(flat, lambda d: d in QUANTIZED_DTYPES)
        folded = {key for pairs in groups.values() for _, key in pairs}
        kept = []
        for t in flat:
            if t.key in folded:
                continue
            if t.key in groups:
                values = tuple((f, float(self._read_key(k).reshape(-1)[0])) for f, k in groups[t.key])
                t = replace(t, quant=values)
            kept.append(t)
        # Writers sort the header by name, so file order says nothing; natural order puts layer.9 first.
        return group_layers(kept, layout=layout, order="natural")

    def layers(self) -> list[LayerInfo]:
        """Return every layer in natural name order."""
        return list(self._layers)

    def _entry(self, key: str) -> Entry:
        try:
            return self._entries[key]
        except KeyError:
            raise SourceError(f"{self.path}: tensor {key!r}: not in this source") from None

    def _read_key(self, key: str) -> np.ndarray:
        e = self._entry(key)
        try:
            return map_bytes(e.file, e.dtype, e.start, e.nbytes, e.shape)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{e.file}: tensor {key!r}: cannot map ({exc})") from None

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor as a read-only memory map of the file."""
        return self._read_key(ref.key)

    def iter_chunks(self, ref: TensorRef, max_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Yield the tensor as read-only 1-D windows mapped one at a time, so memory stays near one chunk."""
        e = self._entry(ref.key)
        count = e.nbytes // e.dtype.itemsize
        yield from iter_file_chunks(e.file, e.start, count, e.dtype, max_elems, ref.key)


def iter_file_chunks(
    file: Path, start: int, count: int, dtype: np.dtype[Any], max_elems: int, key: str, *, confined: bool = False
) -> Iterator[np.ndarray]:
    """Yield count elements of dtype stored at byte start of file, as read-only arrays of at most max_elems.

    Each array is its own memory map of the file, unmapped when the array is dropped: a whole-tensor map
    would keep every page it touched in the resident set until the end, and reading into fresh arrays
    copies every byte once more (measured on a bfloat16 checkpoint in the page cache: 1.1 ns per value
    for pread into 64 MiB arrays, 0.09 ns to map and touch).
    confined: the file was named by another file (ONNX external data), so a symbolic link or a file
    with other hard links is refused here too, at the moment it is opened.
    """
    step = max(1, int(max_elems))
    if count == 0:
        return
    fd = open_regular(file, nofollow=confined, single_link=confined)
    try:
        for first in range(0, count, step):
            n = min(step, count - first)
            yield _map_window(fd, start + first * dtype.itemsize, n, dtype, file, key)
    finally:
        os.close(fd)


# Map the pages of a window at once: one call instead of a page fault per 64 KiB.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _map_window(fd: int, offset: int, n: int, dtype: np.dtype[Any], file: Path, key: str) -> np.ndarray:
    """Map n elements of dtype at byte offset of fd read-only; fail clearly if the file has shrunk."""
    end = offset + n * dtype.itemsize
    size = os.fstat(fd).st_size
    if size < end:
        raise SourceError(f"{file}: tensor {key!r}: truncated: file ended at byte {size}")
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        window = mmap.mmap(fd, end - base, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base)
    except (OSError, ValueError):
        # Where a file cannot be mapped, read it: the same values in a fresh array.
        buf = np.empty(n, dtype=dtype)
        _pread_into(fd, buf.view(np.uint8), offset, file, key)
        return buf
    return np.frombuffer(window, dtype=dtype, count=n, offset=offset - base)


def _pread_into(fd: int, out: np.ndarray, offset: int, file: Path, key: str) -> None:
    """Fill out from fd at offset, failing clearly if the file has shrunk since its header was read."""
    view = out.data
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise SourceError(f"{file}: tensor {key!r}: truncated: file ended at byte {offset + done}")
        done += got
