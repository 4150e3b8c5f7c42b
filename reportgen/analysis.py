"""Per-tensor work: statistics, initialisation check, spectral metrics, dead units."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np

from reportgen import initializers
from reportgen.initcheck import InitCheck, check_init
from reportgen.initializers import InitDistribution
from reportgen.sources.base import LayerInfo, TensorRef, WeightSource
from reportgen.spectral import RowBlocks, SpectralMetrics, spectral_metrics
from reportgen.stats import (
    ChunkFactory,
    ClippedHistogram,
    TensorStats,
    aligned_blocks,
    clipped_histogram,
    flat_pieces,
    readable_range,
    stats_and_patterns,
)
from reportgen.thresholds import DISPLAY
from reportgen.vocab import SpectralFit


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the per-tensor work, from the config."""

    bins: int = 60
    spectral: bool = True
    spectral_max_dim: int = 8192  # skip spectra of matrices whose smaller side exceeds this
    ks_sample: int = 200_000
    spectral_fit: SpectralFit = "csn"
    # Tensors with more elements are read in chunks (1 Mi elements each), never whole, except for the spectrum.
    stream_elems: int = 1 << 24
    spectral_layers: tuple[str, ...] | None = None  # spectra only of layers whose name matches a pattern

    def wants_spectrum(self, layer: str) -> bool:
        """Return whether the layer's kernels get spectral metrics."""
        chosen = self.spectral_layers
        return self.spectral and (chosen is None or any(fnmatchcase(layer, p) for p in chosen))


@dataclass(frozen=True)
class TensorAnalysis:
    """Everything computed from one tensor's values."""

    layer: str
    param: str
    role: str
    stats: TensorStats
    init: InitDistribution | None
    init_check: InitCheck | None
    spectral: SpectralMetrics | None
    dead_units: int | None  # output units (filters, columns) whose weights are all exactly zero
    units: int | None  # number of output units
    # Where the bulk of the values lies, when a few outliers squeeze it into a few bins of stats.histogram.
    view: ClippedHistogram | None = None


def output_units(values: np.ndarray | ChunkFactory, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Return a boolean per output unit: True where every weight of that unit is zero.

    values is the tensor or a function returning it as flat 1-D chunks in storage (C) order. The
    unit axis is the last one (Keras) or the first (PyTorch); each chunk is folded into the per-unit
    flags on its own, so memory stays at one chunk.
    """
    if len(shape) < 2:
        return np.zeros(0, dtype=bool)
    units = shape[0] if layout == "torch" else shape[-1]
    total = math.prod(shape)
    if units == 0 or total == 0:
        return np.zeros(units, dtype=bool)
    per_unit = total // units  # torch: each unit is one contiguous run of this many values
    alive = np.zeros(units, dtype=bool)
    start = 0
    for part in flat_pieces(values, _UNIT_BLOCK)():
        _mark_alive(alive, part, start, units, per_unit, layout)
        start += part.size
    return ~alive


# Values per step of the dead-unit scan: its boolean scratch stays at 4 MiB.
_UNIT_BLOCK = 1 << 22


def _nonzero(part: np.ndarray) -> np.ndarray:
    """Return part != 0 per value; floats of 16 bits or fewer are tested on their bits, without a sign."""
    if _sign_and_zero_bits(part.dtype):
        # bfloat16 and float8 compare through a scalar loop per value; the bits without the sign bit are
        # zero exactly for +0 and -0 (NaN and Inf count as non-zero, as with != 0), at a tenth of the cost.
        bits = part.view(np.uint16 if part.dtype.itemsize == 2 else np.uint8)
        return np.left_shift(bits, 1, dtype=bits.dtype) != 0
    return part != 0


@functools.cache
def _sign_and_zero_bits(dt: np.dtype) -> bool:
    """Return whether dt is a float of 16 bits or fewer whose only zeros are the all-zero bits and -0."""
    if dt.itemsize > 2 or not (dt.kind == "f" or (dt.kind == "V" and dt.type.__module__.startswith("ml_dtypes"))):
        return False
    try:
        bits = np.array([0.0, -0.0]).astype(dt).view(np.uint16 if dt.itemsize == 2 else np.uint8)
    except (TypeError, ValueError):
        return False
    # Types without -0 (float8 *fnuz: that pattern is NaN) or without any zero (e8m0) keep the comparison.
    return int(bits[0]) == 0 and int(bits[1]) == 1 << (8 * dt.itemsize - 1)


def _mark_alive(alive: np.ndarray, part: np.ndarray, offset: int, units: int, per_unit: int, layout: str) -> None:
    """Set alive[u] for every unit u that has a non-zero value in part, which starts at flat offset.

    The values form rows of `per_unit` (torch: one row per unit) or of `units` (keras: one column per
    unit); a part that starts or ends inside a row has that partial row folded on its own, so chunks
    of any size take the reshaped whole-row path for the rest.
    """
    nonzero = _nonzero(part)
    width = per_unit if layout == "torch" else units
    head = min(nonzero.size, -offset % width)
    body = (nonzero.size - head) // width * width
    pieces = ((offset, nonzero[:head]), (offset + head + body, nonzero[head + body :]))
    for at, row in pieces:
        if row.size and layout == "torch":
            alive[at // per_unit] |= bool(row.any())
        elif row.size:
            alive[at % units : at % units + row.size] |= row
    if body:
        rows = nonzero[head : head + body].reshape(-1, width)
        if layout == "torch":
            first = (offset + head) // per_unit
            alive[first : first + rows.shape[0]] |= rows.any(axis=1)
        else:
            alive |= rows.any(axis=0)


def _row_blocks(source: WeightSource, ref: TensorRef, step: int) -> Iterator[np.ndarray]:
    """Yield the rows of a 2-D tensor, step rows at a time, read from its source in chunks."""
    cols = ref.shape[1]
    chunks = source.iter_chunks(ref, max_elems=step * cols)
    for block in aligned_blocks(chunks, step * cols):
        yield block.reshape(-1, cols)


def kernel_shape(layer: LayerInfo) -> tuple[int, ...] | None:
    """Return the shape of the layer's kernel, used for bias fans."""
    k = layer.param("kernel")
    return k.shape if k is not None else None


SPECTRAL_ROLES = ("kernel", "depthwise_kernel", "pointwise_kernel")
Part = str  # "all" | "values" (statistics, init check, dead units) | "spectrum"


def wants_spectrum(layer: LayerInfo, ref: TensorRef, options: AnalysisOptions) -> bool:
    """Return whether the tensor gets spectral metrics: a kernel of 2+ dimensions in a chosen layer."""
    return options.wants_spectrum(layer.name) and ref.role in SPECTRAL_ROLES and len(ref.shape) >= 2


def analyze_tensor(
    source: WeightSource, layer: LayerInfo, ref: TensorRef, options: AnalysisOptions, part: Part = "all"
) -> TensorAnalysis:
    """Read one tensor and compute everything the report needs from its values.

    part "values" leaves the spectrum out and part "spectrum" computes only that (its statistics are
    empty), so one large tensor's two halves can run on two workers; merge_parts joins them.

    Tensors above options.stream_elems elements are read in chunks for the statistics, the
    initialisation check and the dead-unit scan (the same numbers as from the whole array). The spectrum
    of a 2-D matrix is built from blocks of its rows, read again; a conv kernel is read whole, since
    its k x k slices are needed together.
    """
    streamed = math.prod(ref.shape) > options.stream_elems
    values: np.ndarray | ChunkFactory
    if streamed:
        values = functools.partial(source.iter_chunks, ref)
    else:
        values = np.asarray(source.read(ref))
    if part == "spectrum":
        return TensorAnalysis(
            layer.name, ref.name, ref.role, _no_stats(), None, None, _spectrum(source, ref, values, options), None, None
        )
    stats, patterns = stats_and_patterns(values, shape=ref.shape, dtype=ref.dtype, bins=options.bins)
    dist = initializers.distribution(ref.init, ref.shape, ref.layout, kernel_shape(layer))
    check = None
    if dist is not None and stats.finite > 0:
        check = check_init(values, dist, stats, sample_size=options.ks_sample, patterns=patterns)
    dead = units = None
    if ref.role == "kernel" and len(ref.shape) >= 2:
        flags = output_units(values, ref.shape, ref.layout)
        dead, units = int(flags.sum()), int(flags.size)
    spec = None
    if part == "all" and wants_spectrum(layer, ref, options):
        spec = _spectrum(source, ref, values, options)
    view = None
    if (rng := readable_range(stats, DISPLAY.view_widen, DISPLAY.view_trigger)) is not None:
        view = clipped_histogram(values, rng[0], rng[1], options.bins, patterns)
    return TensorAnalysis(layer.name, ref.name, ref.role, stats, dist, check, spec, dead, units, view)


def _spectrum(
    source: WeightSource, ref: TensorRef, values: np.ndarray | ChunkFactory, options: AnalysisOptions
) -> SpectralMetrics | None:
    """Compute the spectrum of a kernel from its array, or from blocks of rows read again (a streamed matrix)."""
    rows: RowBlocks | None = None
    if isinstance(values, np.ndarray):
        whole = values
    elif len(ref.shape) == 2:
        # A matrix is read again a block of rows at a time; the array only carries the shape.
        whole = np.broadcast_to(np.float32(0), ref.shape)
        rows = functools.partial(_row_blocks, source, ref)
    else:
        whole = np.asarray(source.read(ref))  # conv kernels: their slices are needed together
    return spectral_metrics(
        whole, ref.layout, max_dim=options.spectral_max_dim, fit=options.spectral_fit, row_blocks=rows
    )


def merge_parts(values: TensorAnalysis, spectrum: TensorAnalysis) -> TensorAnalysis:
    """Join the two halves of a tensor analysed in parts."""
    return dataclasses.replace(values, spectral=spectrum.spectral)


@functools.cache
def _no_stats() -> TensorStats:
    """Return the statistics slot of a spectrum-only part (an empty tensor's), replaced when the parts merge."""
    return stats_and_patterns(np.zeros(0, dtype=np.float32), shape=(0,), dtype="float32", bins=5)[0]
