"""Time compute_stats against naive NumPy/SciPy calls and one np.max pass over VGG-16-shaped tensors."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.stats

from reportgen.stats import DEFAULT_BLOCK, DEFAULT_SELECT_MAX, compute_stats

# Keras VGG16 weight shapes: 13 conv kernels (kh, kw, in, out), 3 dense kernels, and their biases.
_CONV = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
]
_DENSE = [(25088, 4096), (4096, 4096), (4096, 1000)]
VGG16_SHAPES: tuple[tuple[int, ...], ...] = tuple(
    shape for group in ([(3, 3, i, o), (o,)] for i, o in _CONV) for shape in group
) + tuple(shape for group in ([(i, o), (o,)] for i, o in _DENSE) for shape in group)


def make_tensors(seed: int = 0, scale: float = 1.0) -> list[np.ndarray]:
    """Build float32 arrays of the VGG-16 shapes, Glorot-uniform kernels and small normal biases."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in VGG16_SHAPES:
        if scale != 1.0:
            shape = (*shape[:-1], max(1, int(shape[-1] * scale)))
        if len(shape) == 1:
            out.append(rng.normal(0.0, 0.01, shape).astype(np.float32))
        else:
            fan_in = int(np.prod(shape[:-1]))
            limit = np.sqrt(6.0 / (fan_in + shape[-1]))
            out.append(rng.uniform(-limit, limit, shape).astype(np.float32))
    return out


def naive(x: np.ndarray) -> tuple[float, ...]:
    """Compute the same numbers with one plain NumPy/SciPy call each."""
    return (
        float(np.mean(x)),
        float(np.std(x)),
        float(np.var(x)),
        float(np.min(x)),
        float(np.max(x)),
        float(np.median(x)),
        *(float(v) for v in np.percentile(x, [1, 99])),
        float(scipy.stats.skew(x, axis=None)),
        float(scipy.stats.kurtosis(x, axis=None)),
        float(np.histogram(x, bins=60)[0][0]),
    )


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Return the best wall time of fn over repeat runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(
    report: Callable[[str, float], None] | None = None,
    *,
    repeat: int = 3,
    scale: float = 1.0,
    block: int = DEFAULT_BLOCK,
    select_max: int = DEFAULT_SELECT_MAX,
    with_naive: bool = True,
) -> dict[str, float]:
    """Time naive NumPy, compute_stats and np.max over all VGG-16 tensors; return seconds and ratios."""
    tensors = make_tensors(scale=scale)
    times: dict[str, float] = {"elements": float(sum(t.size for t in tensors))}
    times["max"] = _best(lambda: [np.max(t) for t in tensors], repeat)
    times["reportgen"] = _best(lambda: [compute_stats(t, block=block, select_max=select_max) for t in tensors], repeat)
    if with_naive:
        times["naive"] = _best(lambda: [naive(t) for t in tensors], min(repeat, 2))
        times["naive/reportgen"] = times["naive"] / times["reportgen"]
    times["reportgen/max"] = times["reportgen"] / times["max"]
    if report is not None:
        for key, value in times.items():
            report(key, value)
    return times


def main() -> None:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every tensor's last dimension")
    parser.add_argument("--blocks", action="store_true", help="also time compute_stats at other block sizes")
    args = parser.parse_args()

    def show(name: str, value: float) -> None:
        unit = "x" if "/" in name else ("" if name == "elements" else "s")
        print(f"{name:>18}  {value:12.3f}{unit}" if name != "elements" else f"{name:>18}  {int(value):12d}")

    run(show, repeat=args.repeat, scale=args.scale)
    if args.blocks:
        for block in (1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18):
            t = run(repeat=args.repeat, scale=args.scale, block=block, with_naive=False)
            print(f"block {block:>7}: reportgen {t['reportgen']:.3f}s  ({t['reportgen/max']:.1f}x max)")


if __name__ == "__main__":
    main()
