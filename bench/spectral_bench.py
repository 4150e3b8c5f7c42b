"""Time reportgen's spectral metrics against WeightWatcher on an untrained Keras VGG-16.

Run:  python bench/spectral_bench.py
Both sides see the same model object in the same process, so the ratio is fair on any machine.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reportgen.sources.keras_app import native_stderr_silenced, quiet_tensorflow
from reportgen.spectral import fit_power_law, spectral_metrics


def _build_vgg16() -> Any:
    quiet_tensorflow()
    with native_stderr_silenced():  # TensorFlow's C++ start-up lines
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
            out[layer.name] = spectral_metrics(weights[0], "keras")
    return time.perf_counter() - t0, out


def _weightwatcher_pass(model: Any) -> tuple[float | None, dict[str, dict[str, float]], str]:
    """Return WeightWatcher's analyze() wall time and per-layer fit, or why it could not run."""
    try:
        # weightwatcher prints its backend choice on import; the table is what this bench shows
        with contextlib.redirect_stdout(io.StringIO()), native_stderr_silenced():
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
        # The same eigenvalues fitted with WeightWatcher's rules (its 1e-5 floor after halving, one-sided
        # KS, tails from 2 values): separates agreement of the spectra from the choice of fit.
        a_ww_rule = float("nan")
        if m is not None and m.evals is not None:
            ev = m.evals * halve
            a_ww_rule = fit_power_law(ev[ev > 1e-5], min_tail=2, ks="weightwatcher", exhaustive=True).alpha
        norm_ratio = (halve * m.spectral_norm / ww_row["spectral_norm"]) if m and ww_row else None
        layers.append(
            {
                "layer": name,
                "n_evals": m.n_evals if m else 0,
                "alpha": a,
                "n_tail": m.n_tail if m else 0,
                "alpha_ww_rule": a_ww_rule,
                "ww_alpha": w,
                "ww_n_tail": int(ww_row["num_pl_spikes"]) if ww_row else None,
                "rel_diff": rel,
                "norm_ratio": norm_ratio,
            }
        )
    rels = [row["rel_diff"] for row in layers if row["rel_diff"] is not None]
    rule_rels = [abs(row["alpha_ww_rule"] / row["ww_alpha"] - 1) for row in layers if row["ww_alpha"]]
    return {
        "reportgen_s": ours_s,
        "weightwatcher_s": ww_s,
        "weightwatcher": ww_note,
        "speedup": (ww_s / ours_s) if ww_s else None,
        "layers": layers,
        "within_5pct": sum(r <= 0.05 for r in rels),
        "compared": len(rels),
        "max_rel_diff": max(rels) if rels else None,
        "ww_rule_within_5pct": sum(r <= 0.05 for r in rule_rels),
        "ww_rule_max_rel_diff": max(rule_rels) if rule_rels else None,
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
    head = ("layer", "evals", "alpha", "tail", "ww alpha", "ww tail", "rel diff", "lmax ratio", "ww-rule a")
    print(f"{head[0]:<16}" + "".join(f"{h:>11}" for h in head[1:]))
    for row in r["layers"]:
        ww_a = "-" if row["ww_alpha"] is None else f"{row['ww_alpha']:.3f}"
        ww_t = "-" if row["ww_n_tail"] is None else str(row["ww_n_tail"])
        rel = "-" if row["rel_diff"] is None else f"{100 * row['rel_diff']:.1f}%"
        ratio = "-" if row["norm_ratio"] is None else f"{row['norm_ratio']:.6f}"
        print(
            f"{row['layer']:<16}{row['n_evals']:>11}{row['alpha']:>11.3f}{row['n_tail']:>11}"
            f"{ww_a:>11}{ww_t:>11}{rel:>11}{ratio:>11}{row['alpha_ww_rule']:>11.3f}"
        )
    if r["compared"]:
        worst = 100 * r["max_rel_diff"]
        print(f"alpha within 5%: {r['within_5pct']} of {r['compared']} layers; max diff {worst:.1f}%")
        rule = 100 * r["ww_rule_max_rel_diff"]
        print(
            f"same eigenvalues, WeightWatcher's fit rule: {r['ww_rule_within_5pct']} of "
            f"{r['compared']} within 5%; max diff {rule:.2f}%"
        )


if __name__ == "__main__":
    main()
