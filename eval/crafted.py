"""Crafted faults with known truth: a small MLP trained on scikit-learn's digits in NumPy, then broken on purpose.

The network is a PyTorch-style nn.Sequential saved as safetensors (net.0 Linear 64->64, net.1 BatchNorm1d,
ReLU, net.3 Linear 64->64, ReLU, net.5 Linear 64->32, ReLU, net.7 Linear 32->10), drawn with PyTorch's
defaults (weights and biases from U(+-1/sqrt(fan_in)), BatchNorm ones and zeros), so reportgen has to
recognise the framework from the file and check biases and norms too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness import Case
from threadpoolctl import threadpool_limits

Params = dict[str, np.ndarray]
LINEARS = ("net.0", "net.3", "net.5", "net.7")
SIZES = ((64, 64), (64, 64), (32, 64), (10, 32))  # (out, in), PyTorch layout
EPS = 1e-5


def fresh(seed: int) -> Params:
    """Draw the network as PyTorch would."""
    rng = np.random.default_rng(seed)
    p: Params = {}
    for name, (out, inp) in zip(LINEARS, SIZES):
        bound = 1.0 / np.sqrt(inp)
        p[f"{name}.weight"] = rng.uniform(-bound, bound, (out, inp)).astype(np.float32)
        p[f"{name}.bias"] = rng.uniform(-bound, bound, out).astype(np.float32)
    p["net.1.weight"] = np.ones(64, np.float32)
    p["net.1.bias"] = np.zeros(64, np.float32)
    p["net.1.running_mean"] = np.zeros(64, np.float32)
    p["net.1.running_var"] = np.ones(64, np.float32)
    p["net.1.num_batches_tracked"] = np.array(0, dtype=np.int64)
    return p


def _data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), np.eye(10, dtype=np.float32)[y]


def _grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Return the gradient of the mean cross-entropy for every trainable tensor, and the loss."""
    w = p
    n = x.shape[0]
    z1 = x @ w["net.0.weight"].T + w["net.0.bias"]
    mu, var = z1.mean(0), z1.var(0)
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = (z1 - mu) * inv
    y1 = w["net.1.weight"] * xhat + w["net.1.bias"]
    a1 = np.maximum(y1, 0)
    z2 = a1 @ w["net.3.weight"].T + w["net.3.bias"]
    a2 = np.maximum(z2, 0)
    z3 = a2 @ w["net.5.weight"].T + w["net.5.bias"]
    a3 = np.maximum(z3, 0)
    z4 = a3 @ w["net.7.weight"].T + w["net.7.bias"]
    z4 -= z4.max(1, keepdims=True)
    prob = np.exp(z4) / np.exp(z4).sum(1, keepdims=True)
    loss = float(-(y * np.log(prob + 1e-12)).sum(1).mean())
    g: dict[str, np.ndarray] = {}
    d4 = (prob - y) / n
    g["net.7.weight"], g["net.7.bias"] = d4.T @ a3, d4.sum(0)
    d3 = (d4 @ w["net.7.weight"]) * (z3 > 0)
    g["net.5.weight"], g["net.5.bias"] = d3.T @ a2, d3.sum(0)
    d2 = (d3 @ w["net.5.weight"]) * (z2 > 0)
    g["net.3.weight"], g["net.3.bias"] = d2.T @ a1, d2.sum(0)
    dy1 = (d2 @ w["net.3.weight"]) * (y1 > 0)
    g["net.1.weight"], g["net.1.bias"] = (dy1 * xhat).sum(0), dy1.sum(0)
    dxhat = dy1 * w["net.1.weight"]
    dz1 = inv / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    g["net.0.weight"], g["net.0.bias"] = dz1.T @ x, dz1.sum(0)
    p["net.1.running_mean"] = (0.9 * p["net.1.running_mean"] + 0.1 * mu).astype(np.float32)
    p["net.1.running_var"] = (0.9 * p["net.1.running_var"] + 0.1 * var * n / (n - 1)).astype(np.float32)
    p["net.1.num_batches_tracked"] = p["net.1.num_batches_tracked"] + 1
    return g, loss


def train(p: Params, steps: int, *, lr: float, adam: bool = True, frozen: tuple[str, ...] = ()) -> float:
    """Train p in place on the digits (full batch); return the final loss."""
    x, y = _data()
    m = {k: np.zeros_like(a) for k, a in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    loss = float("nan")
    for t in range(1, steps + 1):  # one BLAS thread: the matrices are small, threads only contend
        g, loss = _grads(p, x, y)
        for k, grad in g.items():
            if k.rsplit(".", 1)[0] in frozen:
                continue
            if adam:
                m[k] = 0.9 * m[k] + 0.1 * grad
                v[k] = 0.999 * v[k] + 0.001 * grad**2
                step = lr * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
            else:
                step = lr * grad
            p[k] = (p[k] - step).astype(np.float32)
    return loss


@dataclass(frozen=True)
class Recipe:
    """How to make one crafted case and what is true of it."""

    name: str
    make: Callable[[], Params]
    labels: tuple[tuple[str, str], ...]
    alerts: tuple[tuple[str, str], ...] = ()


ALL_MOVED = (("*", "moved"),)


@functools.cache
def _trained_once(frozen: tuple[str, ...]) -> tuple[tuple[str, np.ndarray], ...]:
    p = fresh(0)
    with threadpool_limits(1):
        train(p, 150, lr=0.01, frozen=frozen)
    return tuple(p.items())


def _trained(frozen: tuple[str, ...] = ()) -> Params:
    return {k: v.copy() for k, v in _trained_once(frozen)}


def _redrawn() -> Params:
    p, again = _trained(), fresh(1)
    for name in ("net.3", "net.5"):
        p[f"{name}.weight"], p[f"{name}.bias"] = again[f"{name}.weight"], again[f"{name}.bias"]
    return p


def _edit(edit: Callable[[Params], None]) -> Callable[[], Params]:
    def make() -> Params:
        p = _trained()
        edit(p)
        return p

    return make


def _light(steps: int, lr: float, adam: bool) -> Callable[[], Params]:
    def make() -> Params:
        p = fresh(0)
        with threadpool_limits(1):
            train(p, steps, lr=lr, adam=adam)
        return p

    return make


def _set(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Params], None]:
    def edit(p: Params) -> None:
        p[key] = fn(p[key].copy()).astype(np.float32)

    return edit


def _dead(a: np.ndarray) -> np.ndarray:
    a[:8] = 0.0  # 8 of 64 output units
    return a


def _nan(a: np.ndarray) -> np.ndarray:
    a[3, 5] = np.nan
    return a


UNRESOLVED = "at_init"  # moved by less than the test resolves: indistinguishable from the draw
RECIPES = (
    Recipe("mlp trained (healthy)", _trained, ALL_MOVED),
    Recipe("mlp untrained", lambda: fresh(0), (("*", "at_init"),)),
    Recipe(
        "2 of 4 linear layers re-drawn",
        _redrawn,
        (("net.3", "at_init"), ("net.5", "at_init"), ("*", "moved")),
        (("net.3", "at-init-in-trained-model"), ("net.5", "at-init-in-trained-model")),
    ),
    Recipe(
        "net.3 frozen during training",
        lambda: _trained(frozen=("net.3",)),
        (("net.3", "at_init"), ("*", "moved")),
        (("net.3", "at-init-in-trained-model"),),
    ),
    Recipe("8 dead units in net.3", _edit(_set("net.3.weight", _dead)), ALL_MOVED, (("net.3", "dead-units"),)),
    Recipe("a NaN in net.5", _edit(_set("net.5.weight", _nan)), ALL_MOVED, (("net.5", "non-finite"),)),
    Recipe(
        "net.5 scaled x100", _edit(_set("net.5.weight", lambda a: a * 100)), ALL_MOVED, (("net.5", "exploding-scale"),)
    ),
    Recipe(
        "zero bias, no BatchNorm after it",
        _edit(_set("net.5.bias", np.zeros_like)),
        ALL_MOVED,
        (("net.5", "zero-bias"),),
    ),
    Recipe("zero bias before BatchNorm (harmless)", _edit(_set("net.0.bias", np.zeros_like)), ALL_MOVED),
    # Adam's first steps move every weight by about lr, pushing the ones near the bound past it: resolved.
    Recipe("2 Adam steps (lr 1e-3)", _light(2, 1e-3, True), ALL_MOVED),
    # Five tiny SGD steps move the linear weights by ~1e-5 of their scale; BatchNorm's weight leaves 1.0.
    Recipe(
        "5 plain SGD steps (lr 1e-3)",
        _light(5, 1e-3, False),
        (("net.1", "moved"), ("*", UNRESOLVED)),
        tuple((name, "at-init-in-trained-model") for name in LINEARS),
    ),
    Recipe("200 plain SGD steps (lr 0.05)", _light(200, 0.05, False), ALL_MOVED),
)


def cases(folder: Path, wanted: Callable[[str], bool] = lambda name: True) -> list[Case]:
    """Write every wanted crafted model (once) and return the labelled cases."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, r in enumerate(RECIPES):
        if not wanted(r.name):
            continue
        path = folder / f"case{i:02d}.safetensors"
        if not path.is_file():
            tmp = path.with_suffix(".part")
            save_file({k: np.ascontiguousarray(v) for k, v in r.make().items()}, str(tmp))
            tmp.replace(path)
        out.append(Case(r.name, "crafted MLP", path, {}, r.labels, r.alerts, kind="crafted"))
    return out
