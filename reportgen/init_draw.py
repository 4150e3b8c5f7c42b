"""Untrained tensors drawn on demand from their initializers, in fixed seeded chunks, never held whole.

An untrained Keras application is its architecture plus one draw from each variable's initializer. Drawing
those values here, chunk by chunk, gives the same distributions as Keras (the same families, limits and
standard deviations, computed by reportgen.initializers from the layer configs) without a framework:
a worker process regenerates any tensor from its description and the model's seed, so nothing is
copied between processes and a tensor larger than memory is never materialised.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from reportgen.initializers import InitDistribution, distribution
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.formats import FormatName

# Elements per drawn chunk. Each chunk has its own seed (model seed, tensor key, chunk number), so the
# values do not depend on how a reader asks for them.
DRAW_CHUNK = 1 << 20
DRAWN_FAMILIES = ("uniform", "normal", "truncated_normal", "constant")
FORMAT: FormatName = "keras-application"


def drawable(ref: TensorRef) -> InitDistribution | None:
    """Return the distribution a tensor is drawn from, or None when it cannot be drawn chunk by chunk.

    Orthogonal matrices need the whole matrix at once, and integer variables have no initializer
    distribution; a model holding either is built by its framework instead.
    """
    if np.dtype(ref.dtype).kind != "f":
        return None
    dist = distribution(ref.init, ref.shape, ref.layout)
    if dist is None or dist.family not in DRAWN_FAMILIES:
        return None
    return dist


def draw_chunk(
    dist: InitDistribution, seed: int, key: str, index: int, n: int, total: int, dtype: np.dtype
) -> np.ndarray:
    """Return chunk `index` (n values) of a tensor of `total` values drawn from dist, the same on every call."""
    if dist.family == "constant":
        return np.full(n, dist.constant_values(index * DRAW_CHUNK, n, total), dtype=dtype)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(key.encode()), index])))
    work = np.float64 if dtype == np.float64 else np.float32
    x: np.ndarray
    if dist.family == "uniform":
        assert dist.limit is not None
        x = rng.random(n, dtype=work)
        x *= work(2.0 * dist.limit)
        x -= work(dist.limit)
    elif dist.family == "normal":
        x = rng.standard_normal(n, dtype=work)
        x *= work(dist.std)
    else:  # truncated_normal: Keras redraws values beyond two base standard deviations
        assert dist.base_std is not None
        x = np.empty(n, dtype=work)
        filled = 0
        while filled < n:
            z = rng.standard_normal(max(n - filled, 1024) * 21 // 20 + 16, dtype=work)
            z = z[np.abs(z) <= 2.0][: n - filled]
            x[filled : filled + z.size] = z
            filled += z.size
        x *= work(dist.base_std)
    if dist.mean:
        x += work(dist.mean)
    return x.astype(dtype, copy=False)


class DrawnSource(WeightSource):
    """Tensors drawn from their initializers with a seed; layers are known in the building process only."""

    def __init__(self, seed: int, info: SourceInfo | None = None, layers: list[LayerInfo] | None = None) -> None:
        self.draw_seed = seed
        self.info = info or SourceInfo(FORMAT, f"tensors drawn from their initializers (seed {seed})")
        self._layers = list(layers or [])
        # The initializers Keras recorded: values are drawn from these even where a plan states another.
        self._refs = {ref.key: ref for layer in self._layers for ref in layer.params}

    def layers(self) -> list[LayerInfo]:
        """Return the layers in flat order."""
        return list(self._layers)

    def drawn_as(self, ref: TensorRef) -> TensorRef:
        """Return the description the tensor is drawn from: this source's own where it has one."""
        return self._refs.get(ref.key, ref)

    def _chunks(self, ref: TensorRef) -> Iterator[np.ndarray]:
        ref = self.drawn_as(ref)
        dist = drawable(ref)
        if dist is None:
            raise ValueError(f"tensor {ref.key}: initializer {ref.init} cannot be drawn in chunks")
        dtype = np.dtype(ref.dtype)
        for index, start in enumerate(range(0, ref.size, DRAW_CHUNK)):
            n = min(DRAW_CHUNK, ref.size - start)
            yield draw_chunk(dist, self.draw_seed, ref.key, index, n, ref.size, dtype)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the whole tensor, drawn now."""
        parts = list(self._chunks(ref))
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.dtype(ref.dtype))
        return flat.reshape(ref.shape)

    def iter_chunks(self, ref: TensorRef, max_elems: int = DRAW_CHUNK) -> Iterator[np.ndarray]:
        """Yield the tensor flattened, drawn one chunk at a time, in pieces of at most max_elems."""
        for chunk in self._chunks(ref):
            for start in range(0, chunk.size, max_elems):
                yield chunk[start : start + max_elems]


def drawn_source(seed: int, layers: list[LayerInfo], info: SourceInfo) -> DrawnSource | None:
    """Return a source drawing the layers' tensors with seed, or None when one of them cannot be drawn."""
    if any(drawable(p) is None for layer in layers for p in layer.params):
        return None
    return DrawnSource(seed, info, layers)


def open_application(app: str, weights: str | Path | None, model_name: str, seed: int = 0) -> WeightSource:
    """Open keras.applications.<app>; an untrained one is drawn from its initializers where every tensor can be."""
    from reportgen.sources.keras_app import build_application

    return build_application(app, weights, model_name, seed, draw=functools.partial(drawn_source, seed))
