"""Cut a tensor's chunks into fixed blocks and keep the float64 scratch buffers every pass reuses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from reportgen.stats.model import ChunkFactory

# Elements per block of the float32/float64 passes: the float64 scratch blocks (512 KiB each) stay in
# L2. Measured with bench/stats_bench.py --blocks over the VGG-16 shapes, seconds for 16/64/256 Ki
# blocks: AMD EPYC 1.06/0.80/0.70, Intel Xeon (4 MiB L2) 1.30/1.08/1.55. Smaller blocks cost Python
# calls, larger ones leave L2; 64 Ki is the best compromise on both.
DEFAULT_BLOCK = 1 << 16


# Elements per block of the value-table pass: bincount's intp copy of a block is 2 MiB.
TABLE_BLOCK = 1 << 18


# np.dot hands long vectors to OpenBLAS, which threads ddot above 10000 elements; its spinning workers then
# fight the caller (and any other worker thread) for cores. Rows of 8192 keep every ddot single-threaded.
_DOT_ROW = 8192


def flat_pieces(values: np.ndarray | ChunkFactory, max_elems: int | None = None) -> Callable[[], Iterator[np.ndarray]]:
    """Return a function yielding the values, an array or a chunk factory's output, as 1-D pieces.

    An array is one piece; with max_elems every piece is cut to at most that many elements.
    """

    def pieces() -> Iterator[np.ndarray]:
        chunks = (values,) if isinstance(values, np.ndarray) else values()
        flat = (np.asarray(c).reshape(-1) for c in chunks)
        yield from flat if max_elems is None else cut_blocks(flat, max_elems)

    return pieces


def cut_blocks(chunks: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Yield every chunk cut into pieces of at most block elements."""
    for chunk in chunks:
        for start in range(0, chunk.size, block):
            yield chunk[start : start + block]


def aligned_blocks(chunks: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Yield the values of all chunks cut at every multiple of block elements of the whole stream.

    The moments are summed block by block, so fixed block boundaries make every number the same
    however the source happens to cut its chunks (pieces that straddle a boundary are copied).
    """
    carry: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        start = 0
        if have:
            start = min(block - have, chunk.size)
            carry.append(chunk[:start])
            have += start
            if have < block:
                continue
            yield np.concatenate(carry)
            carry, have = [], 0
        full = (chunk.size - start) // block
        for i in range(full):
            yield chunk[start + i * block : start + (i + 1) * block]
        rest = chunk[start + full * block :]
        if rest.size:
            carry, have = [rest], rest.size
    if have:
        yield np.concatenate(carry)


class Scratch:
    """Preallocated float64 and index buffers of one block, reused by every pass."""

    def __init__(self, size: int) -> None:
        self.x = np.empty(size)
        self.sq = np.empty(size)
        self.ones = np.ones(size)
        self.idx = np.empty(size, dtype=np.int32)
        self.idx2 = np.empty(size, dtype=np.int32)
        self.m1 = np.empty(size, dtype=bool)
        self.m2 = np.empty(size, dtype=bool)
        self.m3 = np.empty(size, dtype=bool)


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Return the float64 dot product of two contiguous vectors with single-threaded BLAS calls."""
    n = a.size
    m = n - n % _DOT_ROW
    total = float(np.vecdot(a[:m].reshape(-1, _DOT_ROW), b[:m].reshape(-1, _DOT_ROW)).sum()) if m else 0.0
    return total + float(np.dot(a[m:], b[m:])) if m < n else total


def finite_blocks(blocks: Iterator[np.ndarray], dirty: bool) -> Iterator[np.ndarray]:
    """Yield blocks without their NaN and Inf values (checked only when pass 1 saw any)."""
    for c in blocks:
        if dirty and not (np.isfinite(c.min()) and np.isfinite(c.max())):
            c = c[np.isfinite(c)]
        if c.size:
            yield c
