"""The analysis of the LLM-shaped checkpoint on the local process pool against a Dask LocalCluster.

Both back ends get the same tasks (tensor names, never arrays; each worker opens the shards itself) with
`spectral: false`, on the same number of workers, the page cache warm. Each back end's start-up (worker
processes, for Dask also the scheduler and nannies) is timed apart from the analysis, so the table says
which part any overhead comes from. The target is total Dask time <= 1.2x the pool's.

Interface for bench/run.py: `rows(folder=None, workers=2)` returns llm_bench.Row tuples (name, value,
target, ok); with no folder it uses llm_bench.checkpoint(). `python bench/dask_bench.py` prints them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_bench
from llm_bench import Row

TARGET = 1.2


def time_backend(kind: str, folder: Path, workers: int) -> dict[str, float]:
    """Return start-up and analysis seconds of one back end on the checkpoint, spectral off."""
    from reportgen.analysis import AnalysisOptions
    from reportgen.executor import Executors, reopen_recipe
    from reportgen.sources.detect import open_path

    logging.getLogger("distributed").setLevel(logging.ERROR)
    source = open_path(folder)
    recipe = reopen_recipe(source, folder, None)
    cpu = _CpuSampler()
    t0 = time.perf_counter()
    with Executors(kind, workers=workers) as ex:
        ex.backend(kind)  # start the pool or cluster, timed apart
        t1 = time.perf_counter()
        found = ex.analyze(source, source.layers(), AnalysisOptions(spectral=False), recipe, "bench")
        t2 = time.perf_counter()
        cpu.stop()  # before the workers exit and take their counters with them
    t3 = time.perf_counter()
    source.close()
    return {
        "start_s": t1 - t0,
        "analysis_s": t2 - t1,
        "close_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": cpu.total(),
        "tensors": len(found),
    }


class _CpuSampler:
    """Sum the user + system seconds of this process and all its descendants, sampled every 0.1 s."""

    def __init__(self) -> None:
        import threading

        self.seen: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            self.seen[p.pid] = max(self.seen.get(p.pid, 0.0), t.user + t.system)

    def _loop(self) -> None:
        while not self.done.wait(0.1):
            self._sample()

    def stop(self) -> None:
        """Take a last sample and stop."""
        self.done.set()
        self.thread.join()
        self._sample()

    def total(self) -> float:
        """Return the CPU seconds seen."""
        return sum(self.seen.values())


def _in_fresh_process(kind: str, folder: Path, workers: int) -> dict[str, float]:
    """Run time_backend in a new interpreter, so neither back end inherits the other's imports."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import dask_bench; "
        f"print(json.dumps(dask_bench.time_backend({kind!r}, __import__('pathlib').Path({str(folder)!r}), {workers})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def rows(folder: Path | None = None, workers: int = 2) -> list[Row]:
    """Time both back ends (pool, Dask, pool again) and return the table's rows."""
    folder = llm_bench.checkpoint() if folder is None else folder
    llm_bench.cat_seconds(folder)  # warm the page cache for both
    pool_a = _in_fresh_process("processes", folder, workers)
    dask = _in_fresh_process("dask", folder, workers)
    pool_b = _in_fresh_process("processes", folder, workers)
    # The pool is timed before and after Dask: on a shared machine the mean is the fairer reference.
    pool = {k: (pool_a[k] + pool_b[k]) / 2 for k in pool_a}
    ratio = dask["total_s"] / pool["total_s"]
    analysis_ratio = dask["analysis_s"] / pool["analysis_s"]

    def show(r: dict[str, float]) -> str:
        return f"{r['total_s']:.1f} s (start {r['start_s']:.1f}); CPU {r['cpu_s']:.1f} s"

    return [
        Row(f"Dask LocalCluster vs process pool, {workers} workers", f"{int(pool['tensors'])} tensors, spectral off"),
        Row("  process pool (mean of before and after)", show(pool)),
        Row("  Dask LocalCluster", show(dask)),
        Row(
            "  Dask / pool, analysis alone; CPU seconds", f"{analysis_ratio:.2f}x; {dask['cpu_s'] / pool['cpu_s']:.2f}x"
        ),
        Row("  Dask / pool, total", f"{ratio:.2f}x", f"<= {TARGET}x", ratio <= TARGET),
    ]


def main() -> None:
    """Print the rows as a table."""
    for r in rows():
        mark = "" if r.ok is None else ("  ok" if r.ok else "  MISSED")
        print(f"| {r.name:<48} | {r.value:>40} | {r.target:<10}{mark:<8}|", flush=True)


if __name__ == "__main__":
    main()
