"""Analysis of a config's models on 1 worker and on 2, and of its largest tensor alone, side by side."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

# A fixed single-threaded job (sorting 1 Mi doubles 40 times, ~0.5 s on an idle core).
_SPIN = "import numpy as np\nx = np.random.default_rng(0).random(1 << 20)\nfor _ in range(40): np.sort(x)"


def capacity() -> float:
    """Return how many cores two processes get at once now: 2.0 on an idle 2-core machine, ~1.0 when loaded."""

    def run(n: int) -> float:
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - t

    return 2 * run(1) / run(2)


def main(config: str, rounds: int = 1) -> dict[str, float]:
    """Open the config's models once, then time their analysis with 1 and 2 workers, alternating."""
    from reportgen.analysis import AnalysisOptions
    from reportgen.config import load_config
    from reportgen.executor import Executors, ModelJobs, reopen_recipe
    from reportgen.pipeline import open_model

    loaded = load_config(config)
    cfg = loaded.config
    options = AnalysisOptions(bins=cfg.bins, spectral=cfg.spectral, spectral_fit=cfg.spectral_fit)
    models = []
    for entry in loaded.models:
        source = open_model(entry)
        # As the pipeline does: workers get each tensor's initializer with its job.
        models.append((entry.config.name, source, reopen_recipe(source, source.path, None)))
    every = [ModelJobs(s, tuple(s.layers()), r, name) for name, s, r in models]
    out: dict[str, float] = {"w1": 0.0, "w2": 0.0, "big1": 0.0, "big2": 0.0}
    biggest = max(
        (
            (name, source, recipe, layer, p)
            for name, source, recipe in models
            for layer in source.layers()
            for p in layer.params
        ),
        key=lambda m: m[4].size,
    )
    results: dict[int, list[str]] = {}
    out["capacity_before"] = capacity()
    for _ in range(rounds):
        for workers in (1, 2):
            t = time.perf_counter()
            with Executors(None, None, workers) as ex:
                found = [repr(a) for a in ex.analyze_many(every, options)]
            out[f"w{workers}"] += time.perf_counter() - t
            results[workers] = found
            name, source, recipe, layer, ref = biggest
            big_layer = type(layer)(layer.name, layer.class_name, layer.index, (ref,))
            t = time.perf_counter()
            with Executors(None, None, workers) as ex:
                ex.analyze(source, [big_layer], options, recipe, name)
            out[f"big{workers}"] += time.perf_counter() - t
    out["capacity_after"] = capacity()
    assert results[1] == results[2], "1 and 2 workers gave different numbers"
    out["identical"] = 1.0
    out["big_elems"] = float(biggest[4].size)
    out["big_name"] = f"{biggest[0]}: {biggest[3].name}"  # type: ignore[assignment]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else str(Path("configs/quickstart.yaml")))))
