"""Time the analysis of a ~2.5 GB sharded safetensors checkpoint: local process pool vs Dask LocalCluster."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import struct
import sys
import time
from pathlib import Path

import numpy as np

from reportgen.analysis import AnalysisOptions
from reportgen.executor import Executors, reopen_recipe
from reportgen.sources.detect import open_path

HIDDEN = 1024
INTERMEDIATE = 4096
VOCAB = 32000
SHARDS = 6
WRITE_CHUNK_BYTES = 32 << 20  # peak memory while writing stays near one chunk


def llama_like(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """Return (name, shape) of a decoder-only model with this many blocks, in torch layout."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
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


def _write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator) -> None:
    """Write one safetensors file tensor by tensor, chunk by chunk, never holding a whole tensor."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data region to 8 bytes
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in tensors:
            n = int(np.prod(shape))
            std = 1.0 if name.endswith("norm.weight") else 0.02
            step = WRITE_CHUNK_BYTES // 4
            for start in range(0, n, step):
                count = min(step, n - start)
                chunk = rng.standard_normal(count, dtype=np.float32) * np.float32(std)
                if std == 1.0:
                    chunk = np.float32(1.0) + np.float32(0.05) * chunk
                fh.write(chunk.tobytes())
    tmp.rename(path)


def make_checkpoint(folder: Path, size_gb: float = 2.5, seed: int = 0) -> Path:
    """Write (or reuse) a sharded float32 checkpoint of about size_gb under folder."""
    per_block = (4 * HIDDEN * HIDDEN + 3 * INTERMEDIATE * HIDDEN + 2 * HIDDEN) * 4
    layers = max(1, round((size_gb * (1 << 30) - VOCAB * HIDDEN * 4) / per_block))
    tensors = llama_like(layers)
    index_path = folder / "model.safetensors.index.json"
    total = sum(int(np.prod(s)) * 4 for _, s in tensors)
    if index_path.is_file():
        doc = json.loads(index_path.read_text())
        if doc.get("metadata", {}).get("total_size") == total:
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    # Split by bytes into SHARDS files, keeping tensor order, as writers of real checkpoints do.
    target = total / SHARDS
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    acc = 0
    for name, shape in tensors:
        if acc >= target * len(groups) and len(groups) < SHARDS:
            groups.append([])
        groups[-1].append((name, shape))
        acc += int(np.prod(shape)) * 4
    rng = np.random.default_rng(seed)
    weight_map = {}
    for i, group in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        _write_shard(folder / shard, group, rng)
        weight_map.update({name: shard for name, _ in group})
    index_path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return folder


def _warm_page_cache(folder: Path) -> None:
    """Read every shard once so neither back end pays for the disk alone."""
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(64 << 20):
                pass


def _time(kind: str, folder: Path, workers: int) -> tuple[float, float, int]:
    """Return (start-up seconds, total seconds, tensors) for one back end."""
    source = open_path(folder)
    recipe = reopen_recipe(source, folder, None)
    t0 = time.perf_counter()
    with Executors(kind, workers=workers) as ex:
        ex.backend(kind)  # start the pool or cluster, timed apart
        t1 = time.perf_counter()
        found = ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "bench")
        t2 = time.perf_counter()
    source.close()
    return t1 - t0, t2 - t0, len(found)


def _peak_rss_mib() -> float:
    """Return this process's peak resident set in MiB.

    VmHWM belongs to the current address space, so unlike ru_maxrss it does not carry over the
    parent's size across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(workdir: Path | str, size_gb: float = 2.5, workers: int = 2) -> dict[str, float]:
    """Write the checkpoint under workdir if needed, then time both back ends on it."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    t = time.perf_counter()
    folder = make_checkpoint(Path(workdir) / "dask_bench_ckpt", size_gb)
    write_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    _warm_page_cache(folder)
    local_start, local_s, n = _time("processes", folder, workers)
    dask_start, dask_s, n2 = _time("dask", folder, workers)
    assert n == n2
    return {
        "size_gb": size / (1 << 30),
        "tensors": n,
        "workers": workers,
        "write_s": write_s,
        "local_s": local_s,
        "local_start_s": local_start,
        "dask_s": dask_s,
        "dask_start_s": dask_start,
        "dask/local": dask_s / local_s,
        "dask_analysis/local_analysis": (dask_s - dask_start) / (local_s - local_start),
        "client_max_rss_mb": _peak_rss_mib(),
    }


def main() -> None:
    """Run the benchmark and print a table, then the dict as JSON on the last line."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent.parent / ".bench"))
    ap.add_argument("--size-gb", type=float, default=2.5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    r = run(args.workdir, args.size_gb, args.workers)
    shown = f"{r['size_gb']:.2f} GiB, {r['tensors']} tensors, {r['workers']} workers"
    print(f"checkpoint: {shown}", file=sys.stderr)
    print(f"local process pool: {r['local_s']:.2f} s (start {r['local_start_s']:.2f} s)", file=sys.stderr)
    print(f"dask LocalCluster:  {r['dask_s']:.2f} s (start {r['dask_start_s']:.2f} s)", file=sys.stderr)
    print(
        f"dask / local: {r['dask/local']:.2f}x; analysis only: {r['dask_analysis/local_analysis']:.2f}x",
        file=sys.stderr,
    )
    print(f"client peak RSS: {r['client_max_rss_mb']:.0f} MiB", file=sys.stderr)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
