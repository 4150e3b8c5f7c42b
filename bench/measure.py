"""Wall time and peak memory of a command and every process it starts (worker pools included)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.05


@dataclass(frozen=True)
class Run:
    """One measured command."""

    wall_s: float
    peak_mib: float  # the largest sum over the process tree of each process's proportional set size (PSS)
    main_rss_mib: float  # peak resident set of the command's own process (exact, from the kernel)
    stdout: str
    cpu_s: float = 0.0  # user + system CPU seconds of the command and its processes (sampled)


def _tree_pss(pid: int, cpu: dict[int, float] | None = None) -> int:
    """Return the summed PSS in bytes of pid and its descendants (RSS where PSS cannot be read).

    cpu: updated with each process's user + system seconds so far, by pid.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        if cpu is not None:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
        try:
            # PSS splits pages shared between processes (a forkserver's children, libraries) among them.
            total += p.memory_full_info().pss
        except psutil.Error:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    """Run args, sampling the process tree's memory every SAMPLE_S; raise SystemExit if it fails."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd, text=True)
    peak = 0
    done = threading.Event()
    cpu: dict[int, float] = {}

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss(proc.pid, cpu))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""), daemon=True)
    reader.start()
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}: {err[-2000:]}")
    main_rss = usage.ru_maxrss / 1024
    # Worker processes of a fork server are not the command's waited-for children: sum what was sampled.
    cpu[proc.pid] = usage.ru_utime + usage.ru_stime
    cpu_s = sum(cpu.values())
    return Run(wall, max(peak / (1 << 20), main_rss), main_rss, out[0] if out else "", cpu_s)


def python(*args: str, env: dict[str, str] | None = None) -> Run:
    """Run a Python script or module with this interpreter."""
    return run([sys.executable, *args], env)
