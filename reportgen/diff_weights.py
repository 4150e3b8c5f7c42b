"""Compare two releases' tensors value by value, reopening the weight files their reports recorded."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from reportgen.errors import SourceError
from reportgen.stats_json import ModelDoc

_HASH_BLOCK = 1 << 20
Change = tuple[float | None, float | None, float | None]  # relative change, absolute change, cosine


def _file_ok(path_text: str, sha256: str, base: Path | None) -> Path | None:
    """Return the recorded input file if it still exists with the recorded SHA-256."""
    if not path_text:
        return None
    candidates = [Path(path_text)]
    if base is not None and not Path(path_text).is_absolute():
        candidates.append(base / path_text)
    for path in candidates:
        if path.is_file() and sha256 == _sha256(path):
            return path
    return None


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _sha256_cached(path: str, _mtime_ns: int, _size: int) -> str:
    # Several models often share one file; mtime and size in the key notice a rewrite.
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _weights_path(model: ModelDoc, base: Path | None) -> tuple[Path | None, str]:
    """Return the path to reopen a model's weights from, or None and the reason."""
    files = model.source.files
    if not files:
        return None, "no weight files recorded (a model built in memory)"
    found = []
    for f in files:
        path = _file_ok(f.path, f.sha256, base)
        if path is None:
            return None, f"{f.path} is missing or changed since the report was built"
        found.append(path)
    if len(found) == 1:
        return found[0], ""
    parents = {p.parent for p in found}
    # Several files (sharded safetensors, a SavedModel): open the folder that holds them.
    return (parents.pop(), "") if len(parents) == 1 else (None, "weight files lie in several folders")


def _aligned(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield equal-length float64 pieces of two flat streams, whatever their chunking."""
    ia, ib = iter(a), iter(b)
    xa = xb = np.empty(0)
    while True:
        while xa.size == 0 and (na := next(ia, None)) is not None:
            xa = np.asarray(na).reshape(-1)
        while xb.size == 0 and (nb := next(ib, None)) is not None:
            xb = np.asarray(nb).reshape(-1)
        if xa.size == 0 or xb.size == 0:
            if xa.size or xb.size:
                raise ValueError("tensors differ in length")
            return
        n = min(xa.size, xb.size)
        yield xa[:n].astype(np.float64), xb[:n].astype(np.float64)
        xa, xb = xa[n:], xb[n:]


def weight_change(old_chunks: Iterable[np.ndarray], new_chunks: Iterable[np.ndarray]) -> Change:
    """Return (relative Frobenius change, absolute change, cosine similarity) of two streams."""
    oo = nn = on = dd = 0.0
    for o, n in _aligned(old_chunks, new_chunks):
        d = n - o
        oo += float(np.dot(o, o))
        nn += float(np.dot(n, n))
        on += float(np.dot(o, n))
        dd += float(np.dot(d, d))
    if not all(math.isfinite(x) for x in (oo, nn, on, dd)):
        return None, None, None
    rel = math.sqrt(dd) / math.sqrt(oo) if oo > 0 else None
    cos = on / math.sqrt(oo * nn) if oo > 0 and nn > 0 else None
    # Rounding can push a cosine of identical tensors a hair past 1.
    return rel, math.sqrt(dd), None if cos is None else max(-1.0, min(1.0, cos))


def compare_weights(
    old_model: ModelDoc,
    new_model: ModelDoc,
    wanted: list[tuple[str, str, tuple[int, ...]]],
    bases: tuple[Path | None, Path | None],
) -> tuple[dict[tuple[str, str], Change], str]:
    """Reopen both models' weight files and compare the wanted tensors value by value."""
    from reportgen.sources.detect import open_path

    old_path, why = _weights_path(old_model, bases[0])
    if old_path is None:
        return {}, f"old weights not compared: {why}"
    new_path, why = _weights_path(new_model, bases[1])
    if new_path is None:
        return {}, f"new weights not compared: {why}"
    out: dict[tuple[str, str], Change] = {}
    try:
        with open_path(old_path) as so, open_path(new_path) as sn:
            refs_o = {(layer.name, p.name): p for layer in so.layers() for p in layer.params}
            refs_n = {(layer.name, p.name): p for layer in sn.layers() for p in layer.params}
            for layer, param, shape in wanted:
                ro, rn = refs_o.get((layer, param)), refs_n.get((layer, param))
                if ro is None or rn is None or ro.shape != shape or rn.shape != shape:
                    continue
                out[(layer, param)] = weight_change(so.iter_chunks(ro), sn.iter_chunks(rn))
    except (SourceError, ValueError, OSError) as exc:
        # The statistics still compare; only the value-by-value numbers are lost.
        return {}, f"weights not compared: {exc}"
    return out, f"weights compared from {old_path.name} and {new_path.name}"
