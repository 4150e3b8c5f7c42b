"""`make eval`: score verdicts and alerts on crafted faults and on real trained models shipped in wheels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import crafted
import harness


def main(argv: list[str] | None = None) -> int:
    """Fetch what is missing, run every labelled case and print the table; exit 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", default=".eval-cache", help="where wheels, weights and crafted models are kept")
    ap.add_argument("--only", nargs="*", help="run the models whose names contain these words")
    ap.add_argument("--no-real", action="store_true", help="crafted cases only (no download)")
    ap.add_argument("--no-crafted", action="store_true", help="real models only")
    ap.add_argument("--json", help="also write the scores as JSON to this file")
    ap.add_argument("--measure", action="store_true", help="print the spread of std ratios and outlier factors")
    args = ap.parse_args(argv)
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    cases: list[harness.Case] = []
    skipped: list[str] = []
    if not args.no_crafted:
        cases += crafted.cases(cache / "crafted", lambda name: _wanted(name, args.only))
    if not args.no_real:
        cases += harness.real_cases(cache, args.only, skipped)
    views: list = []
    scores = harness.run(cases, cache / "work", views)
    if args.measure:
        _print_measurements(harness.measurements(views))
    print(harness.table(scores))
    for line in skipped:
        print(line)
    text = harness.details(scores)
    if text:
        print("\n" + text)
    if args.json:
        Path(args.json).write_text(harness.as_json(scores), encoding="utf-8")
    missed = any(s.wrong or s.missed or s.false_alarms for s in scores)
    return 1 if missed else 0


def _print_measurements(found: dict[str, list[tuple[str, str, float]]]) -> None:
    import numpy as np

    for model, rows in found.items():
        for what in ("std_ratio", "outlier"):
            vals = sorted((v, name) for w, name, v in rows if w == what and np.isfinite(v))
            if vals:
                arr = np.array([v for v, _ in vals])
                q = np.percentile(arr, [0, 50, 100])
                print(
                    f"{model}: {what}: n={arr.size} min {q[0]:.3g} ({vals[0][1]}) median {q[1]:.3g} "
                    f"max {q[2]:.3g} ({vals[-1][1]})"
                )


def _wanted(name: str, only: list[str] | None) -> bool:
    return not only or any(w.lower() in name.lower() for w in only)


if __name__ == "__main__":
    raise SystemExit(main())
