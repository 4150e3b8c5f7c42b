"""Compiled inner loops of the streaming statistics, each with a NumPy twin that gives the same numbers.

Numba compiles a loop on first use and caches the machine code on disk (next to this module, or in a
per-user folder under the temporary directory when that is read-only), so only the first build on a
machine pays for compiling. Loading it still costs a process about 0.6 s (Numba's import and code
generator), which pays off only over many values: a process starts on the NumPy twin and takes the
compiled loop once it has counted JIT_AFTER values. REPORTGEN_JIT=0 keeps the NumPy twins (also used
where Numba is not installed), REPORTGEN_JIT=1 takes the compiled loops from the first value; both
give identical integer results.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Elements per np.bincount call of the NumPy twin: bincount's intp copy of a block is 2 MiB.
_BINCOUNT_BLOCK = 1 << 18
# Values a process counts with NumPy before it loads the compiled loop: np.bincount takes ~3 ns per value,
# the loop ~0.5 ns, so after ~64 Mi values (~0.2 s) the 0.6 s of loading is recovered within the next
# ~250 Mi; a tensor of a large checkpoint has 16-130 Mi values (measured on a 2-core AMD EPYC).
JIT_AFTER = 1 << 26
_counted = 0


def jit_enabled() -> bool:
    """Return whether the compiled loops can run: Numba is importable and REPORTGEN_JIT is not 0."""
    return os.environ.get("REPORTGEN_JIT") != "0" and _compiled() is not None


def _loops(size: int) -> dict[str, Callable[..., Any]] | None:
    """Return the compiled loops for a call over size values, or None for the NumPy twin."""
    global _counted
    mode = os.environ.get("REPORTGEN_JIT")
    if mode == "0":
        return None
    _counted += size
    if mode == "1" or _counted > JIT_AFTER:
        return _compiled()
    return None


def _cache_dir() -> None:
    """Point Numba's cache at a writable folder when this package's own folder is read-only."""
    if "NUMBA_CACHE_DIR" in os.environ or os.access(Path(__file__).parent, os.W_OK):
        return
    folder = Path(tempfile.gettempdir()) / f"reportgen-numba-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)


@functools.cache
def _compiled() -> dict[str, Callable[..., Any]] | None:
    """Import Numba and define the compiled loops once per process; None without Numba."""
    try:
        _cache_dir()
        import numba
    except (ImportError, OSError):
        return None
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)

    @jit  # type: ignore[untyped-decorator]
    def count_patterns(bits: np.ndarray, table: np.ndarray) -> None:
        # One table: the store of a repeated pattern forwards to its next load; split tables measured slower.
        for i in range(bits.size):
            table[bits[i]] += 1

    return {"count_patterns": count_patterns}


def count_patterns(bits: np.ndarray, table: np.ndarray) -> None:
    """Add to table[v] the number of elements of the unsigned 1-D array bits equal to v."""
    if bits.size == 0:
        return
    loops = _loops(bits.size)
    if loops is not None:
        loops["count_patterns"](bits, table)
        return
    for start in range(0, bits.size, _BINCOUNT_BLOCK):
        table += np.bincount(bits[start : start + _BINCOUNT_BLOCK], minlength=table.size)
