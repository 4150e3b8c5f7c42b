"""Time reportgen's spectral metrics against WeightWatcher on an untrained Keras VGG-16.

Run:  python bench/spectral_bench.py
Both sides see the same model object in the same process, so the ratio is fair on any machine.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reportgen.spectral import spectral_metrics


def _build_vgg16() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.VGG16(weights=None)


def _reportgen_pass(model: Any) -> tuple[float, dict[str, Any]]:
    """Return the wall time and per-layer metrics of reportgen over every kernel of the model."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and weights[0].ndim >= 2:
            out[layer.name] = spectral_metrics(weights[0], "keras", keep_evals=False)
    return time.perf_counter() - t0, out


def _weightwatcher_pass(model: Any) -> tuple[float | None, dict[str, dict[str, float]], str]:
    """Return WeightWatcher's analyze() wall time and per-layer fit, or why it could not run."""
    try:
        import weightwatcher as ww
    except Exception as exc:  # an absent or broken install is reported, not fatal
        return None, {}, f"weightwatcher not importable ({type(exc).__name__}: {exc}); row skipped"
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    details = ww.WeightWatcher(model=model).analyze()
    elapsed = time.perf_counter() - t0
    cols = ("alpha", "num_pl_spikes", "spectral_norm")
    rows = {str(row["name"]): {c: float(row[c]) for c in cols} for _, row in details.iterrows()}
    return elapsed, rows, f"weightwatcher {getattr(ww, '__version__', '?')}"


def run() -> dict[str, Any]:
    """Time both tools on VGG-16 and compare alpha per layer; return the numbers."""
    model = _build_vgg16()
    load_before = os.getloadavg()[0]
    ours_s, ours = _reportgen_pass(model)
    ww_s, ww_rows, ww_note = _weightwatcher_pass(model)
    layers = []
    for name, m in ours.items():
        a = m.alpha if m is not None else float("nan")
        ww_row = ww_rows.get(name, {})
        w = ww_row.get("alpha")
        rel = abs(a - w) / abs(w) if w not in (None, 0) else None
        # WeightWatcher scales conv slices by 1/sqrt(2) (conv2d_norm), halving their eigenvalues.
        halve = 0.5 if len(model.get_layer(name).get_weights()[0].shape) == 4 else 1.0
        norm_ratio = (halve * m.spectral_norm / ww_row["spectral_norm"]) if m and ww_row else None
        layers.append(
            {
                "layer": name,
                "n_evals": m.n_evals if m else 0,
                "alpha": a,
                "n_tail": m.n_tail if m else 0,
                "ww_alpha": w,
                "ww_n_tail": int(ww_row["num_pl_spikes"]) if ww_row else None,
                "rel_diff": rel,
                "norm_ratio": norm_ratio,
            }
        )
    rels = [row["rel_diff"] for row in layers if row["rel_diff"] is not None]
    return {
        "reportgen_s": ours_s,
        "weightwatcher_s": ww_s,
        "weightwatcher": ww_note,
        "speedup": (ww_s / ours_s) if ww_s else None,
        "layers": layers,
        "within_5pct": sum(r <= 0.05 for r in rels),
        "compared": len(rels),
        "max_rel_diff": max(rels) if rels else None,
        # Other processes on a 2-core machine slow multithreaded BLAS far more than they slow SVD,
        # so a 1-minute load average above ~0.5 before the run makes the ratio pessimistic.
        "load_before": load_before,
    }


def main() -> None:
    """Print the timing and the per-layer alpha comparison."""
    r = run()
    print(f"load average before the run: {r['load_before']:.2f} (cores: {os.cpu_count()})")
    print(f"reportgen spectral metrics: {r['reportgen_s']:.2f} s")
    if r["weightwatcher_s"] is None:
        print(f"WeightWatcher: {r['weightwatcher']}")
    else:
        print(f"WeightWatcher.analyze():    {r['weightwatcher_s']:.2f} s ({r['weightwatcher']})")
        print(f"speed-up: {r['speedup']:.1f}x")
    head = ("layer", "evals", "alpha", "tail", "ww alpha", "ww tail", "rel diff", "lmax ratio")
    print(f"{head[0]:<16}" + "".join(f"{h:>10}" for h in head[1:]))
    for row in r["layers"]:
        ww_a = "-" if row["ww_alpha"] is None else f"{row['ww_alpha']:.3f}"
        ww_t = "-" if row["ww_n_tail"] is None else str(row["ww_n_tail"])
        rel = "-" if row["rel_diff"] is None else f"{100 * row['rel_diff']:.1f}%"
        ratio = "-" if row["norm_ratio"] is None else f"{row['norm_ratio']:.6f}"
        print(
            f"{row['layer']:<16}{row['n_evals']:>10}{row['alpha']:>10.3f}{row['n_tail']:>10}"
            f"{ww_a:>10}{ww_t:>10}{rel:>10}{ratio:>10}"
        )
    if r["compared"]:
        worst = 100 * r["max_rel_diff"]
        print(f"alpha within 5%: {r['within_5pct']} of {r['compared']} layers; max diff {worst:.1f}%")


if __name__ == "__main__":
    main()
