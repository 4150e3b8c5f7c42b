"""Small multi-model releases written as safetensors files and built into reports, without TensorFlow."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from reportgen.cli import main

CONFIG_HEAD = """\
title: "{title}"
output: {out}
formats: [{formats}]
executor: inline
"""
MODEL = """\
  - name: "{name}"
    path: {path}
    init: pytorch_default
    layers:
      - {selector}
"""


def mlp(seed: int, sizes: list[int], prefix: str = "fc") -> dict[str, np.ndarray]:
    """Draw a Linear stack as PyTorch initialises it: weight and bias uniform within 1/sqrt(fan_in)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
        bound = 1.0 / np.sqrt(fan_in)
        out[f"{prefix}{i}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        out[f"{prefix}{i}.bias"] = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return out


def build(
    folder: Path,
    name: str,
    models: dict[str, dict[str, np.ndarray]],
    *,
    formats: str = "json",
    selector: str = "{index: 0}",
    compare_to: Path | None = None,
    title: str | None = None,
) -> tuple[int, Path]:
    """Save each model's tensors and build a report folder/name from them; return the exit code and folder."""
    weights = folder / f"{name}-weights"
    weights.mkdir(parents=True, exist_ok=True)
    text = CONFIG_HEAD.format(title=title or f"Release {name}", out=folder / name, formats=formats)
    if compare_to is not None:
        text += f"compare_to: {compare_to}\n"
    text += "models:\n"
    for model, tensors in models.items():
        path = weights / f"{model}.safetensors"
        save_file(tensors, str(path))
        text += MODEL.format(name=model, path=path, selector=selector)
    cfg = folder / f"{name}.yaml"
    cfg.write_text(text)
    return main(["build", str(cfg), "--quiet"]), folder / name
