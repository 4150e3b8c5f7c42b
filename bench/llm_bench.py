"""An LLM-shaped sharded bfloat16 checkpoint: build speed against reading the files, memory, spectra, JIT.

The checkpoint has transformer blocks with 4096x4096 attention projections and 4096x11008 MLP projections
(LLaMA-7B's shapes), split into shards of about 2 GB with an index; its size in GB comes from
REPORTGEN_BENCH_LLM_GB (default 8) and it is kept under .bench/ for the next run (REPORTGEN_BENCH_DIR
moves it). Every number is measured in this run, side by side:

- `cat SHARDS > /dev/null` (after one untimed read, so both it and the build read from the page cache),
  timed before and after the build, against `reportgen build` with `spectral: false` (stats.json only,
  default workers): the speed ratio cat / build must be at least 0.5;
- the build's peak memory, the largest sum of its processes' PSS, under 1 GiB;
- the CPU seconds of the build per value, which say what bounds it when the machine is shared;
- the spectrum of one matrix of each shape, seconds per matrix on one core;
- the compiled loop's first call in a fresh process with an empty cache and with the cache written.

Interface for bench/run.py: `rows(folder=None)` returns a list of Row(name, value, target, ok), ok None
where there is no target; `checkpoint()` returns the folder (written if needed) for dask_bench.rows.
`python bench/llm_bench.py` prints the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = 4096
INTERMEDIATE = 11008
VOCAB = 32000
SHARD_BYTES = 2 << 30
POOL_VALUES = 96 << 20  # random bfloat16 values that tensors are cut from (192 MB), so writing is disk-bound
RSS_LIMIT_MIB = 1024


class Row(NamedTuple):
    """One line of the bench table."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None


def size_gb() -> float:
    """Return the checkpoint size asked for, in GB (10^9 bytes)."""
    return float(os.environ.get("REPORTGEN_BENCH_LLM_GB", "8"))


def blocks_for(gb: float) -> int:
    """Return how many transformer blocks make a checkpoint of at least gb gigabytes."""
    per_block = (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN) * 2
    return max(1, -(-int(gb * 1e9 - VOCAB * HIDDEN * 2) // per_block))


def tensors(blocks: int) -> list[tuple[str, tuple[int, ...]]]:
    """Return (name, shape) of every tensor, in PyTorch's (out, in) layout."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(blocks):
        p = f"model.layers.{i}"
        out += [(f"{p}.self_attn.{n}_proj.weight", (HIDDEN, HIDDEN)) for n in "qkvo"]
        out += [
            (f"{p}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
            (f"{p}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
            (f"{p}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
            (f"{p}.input_layernorm.weight", (HIDDEN,)),
            (f"{p}.post_attention_layernorm.weight", (HIDDEN,)),
        ]
    out.append(("model.norm.weight", (HIDDEN,)))
    return out


def _write_shard(
    path: Path, group: list[tuple[str, tuple[int, ...]]], pool: np.ndarray, rng: np.random.Generator
) -> None:
    """Write one shard; every matrix is a distinct stretch of the random pool (no repeated rows)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in group:
        nbytes = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in group:
            n = int(np.prod(shape))
            if name.endswith("norm.weight"):
                fh.write((1.0 + 0.05 * pool[:n].astype(np.float32)).astype(pool.dtype).tobytes())
                continue
            while n:
                k = min(n, pool.size // 2)
                start = int(rng.integers(0, pool.size - k + 1))
                fh.write(pool[start : start + k].tobytes())
                n -= k
    tmp.rename(path)


def checkpoint(gb: float | None = None) -> Path:
    """Write (or reuse) the sharded checkpoint and return its folder."""
    import ml_dtypes

    gb = size_gb() if gb is None else gb
    folder = Path(os.environ.get("REPORTGEN_BENCH_DIR", ROOT / ".bench")) / f"llm-bf16-{gb:g}gb"
    specs = tensors(blocks_for(gb))
    total = sum(int(np.prod(s)) * 2 for _, s in specs)
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file() and json.loads(index_path.read_text()).get("metadata", {}).get("total_size") == total:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(POOL_VALUES, dtype=np.float32) * np.float32(0.02)).astype(ml_dtypes.bfloat16)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in specs:
        nbytes = int(np.prod(shape)) * 2
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    weight_map = {}
    for i, group in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        _write_shard(folder / shard, group, pool, rng)
        weight_map.update({name: shard for name, _ in group})
    index_path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return folder


def shard_files(folder: Path) -> list[Path]:
    """Return the checkpoint's shard files in order."""
    return sorted(folder.glob("*.safetensors"))


def cat_seconds(folder: Path) -> float:
    """Time `cat SHARDS > /dev/null`."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["cat", *map(str, shard_files(folder))], stdout=sink, check=True)
    return time.perf_counter() - t


def sha256_seconds(folder: Path) -> tuple[float, float]:
    """Return (wall, CPU) seconds of hashing every shard as a build does, on one core."""
    from reportgen.report_model import sha256_file

    t, c = time.perf_counter(), time.process_time()
    for f in shard_files(folder):
        sha256_file(f)
    return time.perf_counter() - t, time.process_time() - c


def build(folder: Path, workdir: Path, extra: str = "") -> measure.Run:
    """Run `reportgen build` (stats.json only) on the checkpoint with extra config lines."""
    cfg = workdir / "llm.yaml"
    cfg.write_text(
        f"title: LLM checkpoint\noutput: {workdir / 'llm-report'}\nformats: [json]\n{extra}"
        f"models:\n  - {{name: llm, path: {folder}}}\n"
    )
    return measure.python("-m", "reportgen", "build", str(cfg), "--force", "--quiet")


_JIT_PROBE = (
    "import time, numpy as np, numba; from reportgen.stats import kernels; t = time.perf_counter(); "
    "kernels.count_patterns(np.arange(1000, dtype=np.uint16), np.zeros(65536, dtype=np.int64)); "
    "assert kernels.jit_enabled(); print(time.perf_counter() - t)"
)


def jit_seconds() -> tuple[float, float]:
    """Return the first compiled call's seconds (Numba imported) in a fresh process: empty cache, then written."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT), REPORTGEN_JIT="1")
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", _JIT_PROBE], env=env, capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(2)
        ]
    return runs[0], runs[1]


_SPECTRA_PROBE = """
import json, sys, time
from pathlib import Path
import numpy as np
from threadpoolctl import threadpool_limits
import scipy.linalg
from reportgen.analysis import _row_blocks
from reportgen.sources.detect import open_path
from reportgen.spectral import spectral_metrics
import functools
source = open_path(Path(sys.argv[1]))
refs = {p.key: p for layer in source.layers() for p in layer.params}
out = {}
with threadpool_limits(limits=1, user_api="blas"):
    for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"):
        ref = refs[key]
        t = time.perf_counter()
        m = spectral_metrics(np.broadcast_to(np.float32(0), ref.shape), ref.layout,
                             row_blocks=functools.partial(_row_blocks, source, ref))
        assert m is not None
        out["x".join(map(str, ref.shape))] = time.perf_counter() - t
print(json.dumps(out))
"""


def spectra_seconds(folder: Path) -> dict[str, float]:
    """Return the seconds of one matrix's spectral metrics per shape, on one core, as a build computes them."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _SPECTRA_PROBE, str(folder)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def rows(folder: Path | None = None, spectra: bool = True) -> list[Row]:
    """Measure everything on the checkpoint (written first if needed) and return the table's rows."""
    folder = checkpoint() if folder is None else folder
    files = shard_files(folder)
    nbytes = sum(f.stat().st_size for f in files)
    values = (nbytes - sum(8 + struct.unpack("<Q", f.open("rb").read(8))[0] for f in files)) // 2
    cat_seconds(folder)  # fill the page cache: cat and the build then both read memory
    with tempfile.TemporaryDirectory() as tmp:
        cats = [cat_seconds(folder)]
        run = build(folder, Path(tmp), "spectral: false\n")
        cats.append(cat_seconds(folder))
    cat_s = statistics.mean(cats)
    speed = cat_s / run.wall_s
    out = [
        Row("LLM-shaped bf16 checkpoint", f"{nbytes / 1e9:.2f} GB, {len(files)} shards, {values / 1e9:.2f} G values"),
        Row("  cat > /dev/null (page cache)", f"{cat_s:.2f} s ({nbytes / cat_s / 1e9:.1f} GB/s)"),
        Row("  reportgen build, spectral: false", f"{run.wall_s:.2f} s, CPU {run.cpu_s:.1f} s"),
        Row("  speed build / cat", f"{speed:.2f}x", ">= 0.5x", speed >= 0.5),
        Row("  CPU per value (all processes)", f"{run.cpu_s / values * 1e9:.2f} ns"),
    ]
    hash_wall, hash_cpu = sha256_seconds(folder)
    out += [
        Row("  of which SHA-256 of the shards (one core)", f"{hash_wall:.2f} s, CPU {hash_cpu:.2f} s"),
        Row(
            "  peak memory (sum of PSS)",
            f"{run.peak_mib:.0f} MiB",
            f"< {RSS_LIMIT_MIB} MiB",
            run.peak_mib < RSS_LIMIT_MIB,
        ),
    ]
    cold, warm = jit_seconds()
    out.append(Row("  compiled loop: first call, empty / warm cache", f"{cold:.2f} s / {warm:.2f} s"))
    if spectra:
        for shape, secs in spectra_seconds(folder).items():
            out.append(Row(f"  spectrum of one {shape} matrix (1 core)", f"{secs:.1f} s"))
    return out


def main() -> None:
    """Print the rows as a table."""
    for r in rows():
        mark = "" if r.ok is None else ("  ok" if r.ok else "  MISSED")
        print(f"| {r.name:<48} | {r.value:>34} | {r.target:<10}{mark:<8}|", flush=True)


if __name__ == "__main__":
    main()
