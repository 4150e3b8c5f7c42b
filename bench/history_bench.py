"""Time `reportgen history` on 30 releases of a 200-layer model (stats.json files derived from one real build)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LAYERS = 200
RELEASES = 30
WIDTH = 96
CONFIG = """\
title: "History benchmark"
output: {out}
formats: [json]
models:
  - name: deep-mlp
    path: {weights}
    init: pytorch_default
"""
# Statistics that scale with the weights; the rest (counts, shape, skewness, kurtosis) do not.
SCALED = ("mean", "std", "min", "max", "median", "p01", "p99", "mean_abs", "max_abs", "l2")


def base_report(work: Path) -> Path:
    """Build the real report of a 200-layer MLP at its PyTorch initialisation."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    bound = 1.0 / math.sqrt(WIDTH)
    tensors = {}
    for i in range(LAYERS):
        tensors[f"layers.{i:03d}.weight"] = rng.uniform(-bound, bound, (WIDTH, WIDTH)).astype(np.float32)
        tensors[f"layers.{i:03d}.bias"] = rng.uniform(-bound, bound, WIDTH).astype(np.float32)
    work.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(work / "deep.safetensors"))
    (work / "history.yaml").write_text(CONFIG.format(out=work / "base", weights=work / "deep.safetensors"))
    subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(work / "history.yaml"), "--force", "-q"], check=True
    )
    return work / "base" / "stats.json"


def _scale(param: dict, factor: float) -> None:  # type: ignore[type-arg]
    stats = param.get("stats")
    if not stats:
        return
    for key in SCALED:
        if stats.get(key) is not None:
            stats[key] *= factor
    if stats.get("var") is not None:
        stats["var"] *= factor * factor
    h = stats.get("histogram")
    if h:
        h["edges"] = [e * factor for e in h["edges"]]


def releases(base: Path, work: Path) -> list[Path]:
    """Write 30 releases: training over the first ten, slow drift, a layer reset at 20, a NaN at 25."""
    doc = json.loads(base.read_text())
    rng = np.random.default_rng(1)
    target = 1.0 + rng.uniform(0.2, 1.5, LAYERS)  # where each layer's scale ends up after training
    out = []
    for r in range(RELEASES):
        d = copy.deepcopy(doc)
        (model,) = d["models"]
        for i, layer in enumerate(model["layers"]):
            progress = min(1.0, r / 10)
            factor = 1.0 + (target[i] - 1.0) * progress + 0.002 * r * (i % 7)
            if i == 120 and r >= 20:  # re-initialised in release 20 and never trained again
                factor = 1.0
            for p in layer["params"]:
                _scale(p, factor)
            if layer.get("verdict"):
                layer["verdict"]["status"] = "moved" if factor > 1.05 else "at_init"
            if i == 77 and r >= 25:
                layer["params"][0]["stats"]["nan"] = 1
                d["alerts"].append(
                    {
                        "code": "non-finite",
                        "severity": "critical",
                        "model": model["name"],
                        "layer": layer["name"],
                        "param": layer["params"][0]["name"],
                        "message": "1 NaN and 0 Inf values",
                        "numbers": [],
                    }
                )
        d["title"] = f"History benchmark, release {r + 1}"
        folder = work / f"v{r + 1:02d}"
        folder.mkdir(exist_ok=True)
        (folder / "stats.json").write_text(json.dumps(d))
        out.append(folder)
    return out


def run(work: Path) -> dict[str, float]:
    """Build the releases, then time history in a fresh interpreter per format set."""
    folders = releases(base_report(work), work)
    res: dict[str, float] = {"releases": len(folders), "layers": LAYERS}
    for label, formats in (("json", "json"), ("all", "html,pdf,json")):
        out = work / f"history-{label}"
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "reportgen", "history", *map(str, folders), "-o", str(out), "-f", formats]
        subprocess.run([*cmd, "--force", "-q"], check=True)
        res[f"{label}_s"] = time.perf_counter() - t
    out = work / "history-all"
    res["html_kib"] = (out / "history.html").stat().st_size / 1024
    res["json_kib"] = (out / "history.json").stat().st_size / 1024
    try:
        import pypdf

        res["pdf_pages"] = len(pypdf.PdfReader(out / "history.pdf").pages)
    except ImportError:
        res["pdf_pages"] = -1
    return res


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".bench/history"))))
