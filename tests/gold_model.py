"""A small fixed model in two releases, drawn with NumPy and written as safetensors and Keras .weights.h5."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from safetensors.numpy import save_file

# PyTorch layout (out, in, kh, kw) / (out, in): conv 1->4, conv 4->8, linear 72->16, linear 16->10.
TORCH_SHAPES = {"conv1": (4, 1, 3, 3), "conv2": (8, 4, 3, 3), "fc1": (16, 72), "fc2": (10, 16)}
# Keras layout (kh, kw, in, out) / (in, out), the same net.
KERAS_SHAPES = {"conv2d": (3, 3, 1, 4), "conv2d_1": (3, 3, 4, 8), "dense": (72, 16), "dense_1": (16, 10)}

CONFIG = """\
title: "Golden model, release {release}"
output: {out}
formats: [html, json]
executor: inline
models:
  - name: torch untrained
    path: {folder}/untrained.safetensors
    init: pytorch_default
    layers:
      - {{index: 0, label: first convolutional}}
  - name: torch trained
    path: {folder}/trained.safetensors
    init: pytorch_default
    layers:
      - {{index: 0, label: first convolutional}}
      - {{index: -1, label: last fully connected}}
  - name: keras trained
    path: {folder}/trained.weights.h5
    init: glorot_uniform
    layers:
      - {{index: 0, label: first convolutional}}
"""


def _fans(shape: tuple[int, ...], torch: bool) -> tuple[int, int]:
    """Return (fan_in, fan_out) of a kernel in PyTorch or Keras layout."""
    receptive = int(np.prod(shape[2:] if torch else shape[:-2])) if len(shape) > 2 else 1
    out_, in_ = (shape[0], shape[1]) if torch else (shape[-1], shape[-2])
    return in_ * receptive, out_ * receptive


def torch_untrained(seed: int = 0) -> dict[str, np.ndarray]:
    """Draw every layer as PyTorch initialises it: uniform within 1/sqrt(fan_in), bias too."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in TORCH_SHAPES.items():
        bound = 1.0 / np.sqrt(_fans(shape, torch=True)[0])
        out[f"{name}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
        out[f"{name}.bias"] = rng.uniform(-bound, bound, shape[0]).astype(np.float32)
    return out


def keras_untrained(seed: int = 1) -> dict[str, np.ndarray]:
    """Draw every kernel from glorot_uniform and set biases to zero, as Keras does."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in KERAS_SHAPES.items():
        fan_in, fan_out = _fans(shape, torch=False)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out[f"{name}/0"] = rng.uniform(-limit, limit, shape).astype(np.float32)
        out[f"{name}/1"] = np.zeros(shape[-1], np.float32)
    return out


def trained(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return a deterministic 'trained' copy: weights grown and shifted away from their initial draw."""
    out = {}
    for i, (name, w) in enumerate(sorted(weights.items())):
        wave = np.sin(np.arange(w.size, dtype=np.float64) * (0.37 + 0.01 * i)).reshape(w.shape)
        scale = float(np.abs(w).max()) or 0.05
        out[name] = (1.8 * w + 0.6 * scale * wave + 0.02 * scale).astype(np.float32)
    return out


def release_two(weights: dict[str, np.ndarray], fc1: str, conv2: str) -> dict[str, np.ndarray]:
    """Return release 2: the fc1 kernel re-drawn from a fresh seed, the conv2 kernel scaled x3."""
    out = dict(weights)
    rng = np.random.default_rng(99)
    w = weights[fc1]
    bound = float(np.abs(w).max())
    out[fc1] = rng.uniform(-bound, bound, w.shape).astype(np.float32)
    out[conv2] = (3.0 * weights[conv2]).astype(np.float32)
    return out


def _write_keras(path: Path, weights: dict[str, np.ndarray]) -> None:
    """Write a Keras 3 .weights.h5 layout (layers/NAME/vars/I) with h5py."""
    with h5py.File(path, "w") as f:
        for key, value in weights.items():
            layer, index = key.split("/")
            f.create_dataset(f"layers/{layer}/vars/{index}", data=value)


def write_release(folder: Path, release: int, out: Path) -> Path:
    """Write the weight files and config of a release into folder; return the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    torch = trained(torch_untrained())
    keras = trained(keras_untrained())
    keras["dense_1/0"] = keras_untrained()["dense_1/0"]  # a layer left at its initial values: an alert
    torch["fc1.weight"][3] = 0.0  # a dead unit: an alert
    if release == 2:
        torch = release_two(torch, "fc1.weight", "conv2.weight")
        keras = release_two(keras, "dense/0", "conv2d_1/0")
    save_file(torch_untrained(), str(folder / "untrained.safetensors"))
    save_file(torch, str(folder / "trained.safetensors"))
    _write_keras(folder / "trained.weights.h5", keras)
    cfg = folder / "config.yaml"
    cfg.write_text(CONFIG.format(release=release, out=out, folder=folder))
    return cfg
