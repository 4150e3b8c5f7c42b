"""Checks every reader makes before it trusts a path or a JSON document taken from a file."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import ReportgenError, SourceError, printable
from reportgen.sources.base import LayerInfo, LayerView, WeightSource

# JSON in weights files (safetensors headers, Keras configs) nests about 20 levels; 100 leaves room
# and keeps every recursive walk over it far from Python's recursion limit.
MAX_JSON_DEPTH = 100


@dataclasses.dataclass(frozen=True)
class PathWords:
    """How a reader refuses a path: its error class (hence exit code) and the words naming the file."""

    error: type[ReportgenError] = SourceError
    what: str = "file"  # "no such {what}"
    cannot_read: str = "cannot read"
    cannot_open: str = "cannot open"


SOURCE_FILE = PathWords()


def check_path(path: Path, what: str | None = None, words: PathWords = SOURCE_FILE) -> os.stat_result:
    """Stat path without opening it; refuse bad names, FIFOs, sockets and devices with one line."""
    name, error = printable(str(path), 300), words.error
    try:
        st = os.stat(path)
    except ValueError:
        raise error(f"{name}: invalid file name (NUL byte)") from None
    except FileNotFoundError:
        raise error(f"{name}: no such {what or words.what}") from None
    except OSError as exc:
        raise error(f"{name}: {words.cannot_read} ({exc.strerror or type(exc).__name__})") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise error(f"{name}: not a regular file (a FIFO, socket or device); refused")
    return st


def open_regular(
    path: Path, *, nofollow: bool = False, single_link: bool = False, words: PathWords = SOURCE_FILE
) -> int:
    """Open path read-only without blocking on a FIFO; return the fd of a checked regular file.

    nofollow refuses a symbolic link as the last component; single_link refuses a file with other
    hard links, whose other name may lie anywhere on the same file system.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    name, error = printable(str(path), 300), words.error
    try:
        fd = os.open(path, flags)
    except ValueError:
        raise error(f"{name}: invalid file name (NUL byte)") from None
    except OSError as exc:
        if nofollow and os.path.islink(path):
            raise error(f"{name}: symbolic link refused (links are not followed)") from None
        raise error(f"{name}: {words.cannot_open} ({exc.strerror or type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{name}: not a regular file (a FIFO, socket or device); refused")
        if single_link and st.st_nlink > 1:
            raise error(f"{name}: file has {st.st_nlink} hard links; refused (its other names may lie elsewhere)")
        # Reads should block normally from here on; O_NONBLOCK only guarded the open itself.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_json(
    raw: bytes | str,
    where: str,
    *,
    hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    max_depth: int | None = MAX_JSON_DEPTH,
) -> Any:
    """Parse JSON from a file; refuse invalid text or deep nesting with a message that quotes none of it.

    max_depth bounds documents that recursive code walks afterwards (model configs); None leaves only
    the parser's own limit, for documents read flat (a safetensors header).
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where} is not valid JSON (not UTF-8 at byte {exc.start})") from None
    limit = f"{max_depth} levels" if max_depth is not None else "the parser allows"
    deep = f"{where} nests JSON deeper than {limit}; refused"
    try:
        doc = json.loads(text, object_pairs_hook=hook)
    except RecursionError:
        raise SourceError(deep) from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # a hook's refusal, e.g. a duplicate key, or an integer of >4300 digits
        raise SourceError(f"{where} is not valid JSON ({printable(str(exc).splitlines()[0], 120)})") from None
    if max_depth is not None and json_depth(doc, max_depth) > max_depth:
        raise SourceError(deep)
    return doc


def json_depth(doc: Any, stop: int = MAX_JSON_DEPTH) -> int:
    """Return how deep lists and objects nest in doc (or stop + 1 once deeper), without recursion."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


# Numeric types numpy reports with kind "V" (ml_dtypes' bfloat16, float8, int4, ...).
_NUMERIC_NAMES = ("bfloat16", "float8_", "float4_", "int4", "uint4", "int2", "uint2")
MAX_LISTED_NON_NUMERIC = 5


def is_numeric(dtype: str) -> bool:
    """Tell whether a tensor's dtype name is one statistics can be computed on."""
    if dtype.startswith(_NUMERIC_NAMES):
        return True
    try:
        return np.dtype(dtype).kind in "biuf"
    except (TypeError, ValueError):
        return False


def numeric_only(source: WeightSource) -> WeightSource:
    """Return source itself when every tensor is numeric, else a NumericOnly view of it."""
    if all(is_numeric(p.dtype) for layer in source.layers() for p in layer.params):
        return source
    return NumericOnly(source)


class NumericOnly(LayerView):
    """Wrap a source so tensors of non-numeric type (text, compound, reference, complex) are listed, not analysed.

    They stay out of layers(), so nothing tries to compute statistics of them, and the source
    description names them, so the report and `inspect` say what was left out and why.
    """

    def __init__(self, inner: WeightSource) -> None:
        self.inner = inner
        skipped: list[str] = []
        self._layers: list[LayerInfo] = []
        for layer in inner.layers():
            keep = tuple(p for p in layer.params if is_numeric(p.dtype))
            skipped.extend(f"{p.key} ({p.dtype})" for p in layer.params if not is_numeric(p.dtype))
            self._layers.append(dataclasses.replace(layer, params=keep) if len(keep) != len(layer.params) else layer)
        self.info = inner.info
        if skipped:
            shown = ", ".join(printable(s, 80) for s in skipped[:MAX_LISTED_NON_NUMERIC])
            more = f" and {len(skipped) - MAX_LISTED_NON_NUMERIC} more" if len(skipped) > MAX_LISTED_NON_NUMERIC else ""
            self.info = dataclasses.replace(
                inner.info,
                description=f"{inner.info.description}; {len(skipped)} non-numeric tensors not analysed: {shown}{more}",
            )
