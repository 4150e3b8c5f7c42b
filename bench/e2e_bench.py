"""Time one end-to-end build of a config and report the share of each stage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(config: str, out: str, workers: int = 0) -> dict[str, float]:
    """Build config into out, printing stage timings as JSON on the last line."""
    t0 = time.perf_counter()
    from reportgen.config import load_config
    from reportgen.pipeline import BuildOptions, build

    t1 = time.perf_counter()
    from reportgen.sources.keras_app import quiet_tensorflow

    quiet_tensorflow()
    import keras  # noqa: F401  - the framework import is its own line in the table

    t2 = time.perf_counter()
    result = build(load_config(config), BuildOptions(output=out, force=True, workers=workers))
    t3 = time.perf_counter()
    timings = {"import reportgen": t1 - t0, "import keras/tensorflow": t2 - t1}
    timings.update({k: v for k, v in result.timings.items()})
    timings["total"] = t3 - t0
    return timings


if __name__ == "__main__":
    args = sys.argv[1:]
    res = main(args[0], args[1], int(args[2]) if len(args) > 2 else 0)
    print(json.dumps(res))
    Path(args[1]).exists()
