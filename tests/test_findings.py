"""Findings: each sentence checked against numbers computed here from the models' own arrays."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DigitsModels


def _findings(built: Path) -> list[dict]:
    return json.loads((built / "stats.json").read_text())["findings"]


def _glorot_ratio(kernel: np.ndarray) -> float:
    """max |w| over the glorot_uniform limit, with Keras's fans (receptive field times channels)."""
    receptive = int(np.prod(kernel.shape[:-2])) if kernel.ndim > 2 else 1
    fan_in, fan_out = kernel.shape[-2] * receptive, kernel.shape[-1] * receptive
    return float(np.abs(kernel).max() / math.sqrt(6.0 / (fan_in + fan_out)))


def _one(findings: list[dict], model: str, kind: str, contains: str = "") -> dict:
    hits = [f for f in findings if f["model"] == model and f["kind"] == kind and contains in f["text"]]
    assert len(hits) == 1, (model, kind, contains, findings)
    return hits[0]


def test_init_bound_finding_matches_the_arrays(built: Path, digits_models: DigitsModels) -> None:
    findings = _findings(built)
    ratios = {name: _glorot_ratio(w[0]) for name, w in digits_models.untrained_arrays.items() if w[0].ndim >= 2}
    worst = max(ratios, key=ratios.__getitem__)
    assert ratios[worst] <= 1.0 + 1e-6
    f = _one(findings, "untrained", "init")
    assert f["text"].startswith(f"All {len(ratios)} kernels of untrained lie inside their glorot_uniform bound")
    assert f["layer"] == worst
    reported = float(re.search(r"the largest \|w\| is ([0-9.]+) of its limit", f["text"]).group(1))
    assert reported == pytest.approx(ratios[worst], abs=5e-6)

    trained = {name: _glorot_ratio(w[0]) for name, w in digits_models.trained_arrays.items() if w[0].ndim >= 2}
    outside = [n for n, r in trained.items() if r > 1.0 + 1e-6]
    worst = max(trained, key=trained.__getitem__)
    f = _one(findings, "trained", "init")
    assert f["text"].startswith(f"{len(outside)} of {len(trained)} kernels of trained exceed the bound")
    assert f["layer"] == worst
    reported = float(re.search(r"is ([0-9.]+)× the initial limit", f["text"]).group(1))
    assert reported == pytest.approx(trained[worst], rel=5e-3)


def test_zero_bias_findings_count_the_arrays(built: Path, digits_models: DigitsModels) -> None:
    findings = _findings(built)
    kinds = {"conv1": "Conv2D", "conv2": "Conv2D", "fc1": "Dense", "predictions": "Dense"}
    for model, arrays in (("untrained", digits_models.untrained_arrays), ("trained", digits_models.trained_arrays)):
        for kind in ("Conv2D", "Dense"):
            biases = [arrays[name][1] for name, k in kinds.items() if k == kind]
            zero = [name for name, k in kinds.items() if k == kind and not arrays[name][1].any()]
            hits = [f for f in findings if f["model"] == model and f["kind"] == "bias" and f" {kind} bias" in f["text"]]
            if not zero:
                assert hits == []
                continue
            assert len(hits) == 1
            text = hits[0]["text"]
            lead = f"All {len(biases)}" if len(zero) == len(biases) else f"{len(zero)} of {len(biases)}"
            assert text.startswith(f"{lead} {kind} biases of {model} are exactly 0")
            # conv1 is the only layer that feeds BatchNormalization (bn1).
            if "conv1" in zero:
                assert "BatchNormalization" in text
            else:
                assert "BatchNormalization" not in text and text.endswith("(their initial value).")
    # Untrained: both Conv2D biases are zero and only conv1 feeds bn1.
    text = _one(findings, "untrained", "bias", "Conv2D").get("text")
    assert "1 of them feeds BatchNormalization" in text


def test_comparison_finding_has_the_std_ratio(built: Path, digits_models: DigitsModels) -> None:
    findings = _findings(built)
    f = next(f for f in findings if f["kind"] == "comparison" and f["layer"] == "conv1")
    s0 = float(np.std(digits_models.untrained_arrays["conv1"][0], dtype=np.float64))
    s1 = float(np.std(digits_models.trained_arrays["conv1"][0], dtype=np.float64))
    m = re.search(r"untrained: std ([0-9.]+), .*?; trained: std ([0-9.]+) \(([0-9.]+)×\)", f["text"])
    assert m is not None, f["text"]
    assert float(m.group(1)) == pytest.approx(s0, rel=5e-4)
    assert float(m.group(2)) == pytest.approx(s1, rel=5e-4)
    assert float(m.group(3)) == pytest.approx(s1 / s0, abs=6e-3)


def _fake_model(biases: dict[str, tuple[str, np.ndarray, list[str]]]) -> SimpleNamespace:
    """A stand-in for ModelView with only what the bias findings read: layers, feeds and bias stats."""
    from reportgen.stats import compute_stats

    layers = [
        SimpleNamespace(name=n, class_name=k, feeds=tuple(f), params=("bias",)) for n, (k, _, f) in biases.items()
    ]
    layers.append(SimpleNamespace(name="bn", class_name="BatchNormalization", feeds=(), params=()))
    stats = {n: SimpleNamespace(role="bias", stats=compute_stats(b)) for n, (_, b, _) in biases.items()}
    return SimpleNamespace(
        name="m",
        layers=layers,
        weighted_layers=[layer for layer in layers if layer.params],
        analysis=lambda layer, param: stats.get(layer) if param == "bias" else None,
    )


def test_bias_finding_wording_follows_the_counts() -> None:
    from reportgen.findings import _biases

    one = _fake_model({"head": ("Dense", np.zeros(3), [])})
    assert [f.text for f in _biases(one)] == ["The Dense bias of m (head) is exactly 0 (its initial value)."]
    one_bn = _fake_model({"c": ("Conv2D", np.zeros(3), ["bn"])})
    assert _biases(one_bn)[0].text.startswith("The Conv2D bias of m (c) is exactly 0; it is followed by")
    mixed = _fake_model(
        {
            "c1": ("Conv2D", np.zeros(3), ["bn"]),
            "c2": ("Conv2D", np.zeros(3), []),
            "c3": ("Conv2D", np.ones(3), []),
        }
    )
    (f,) = _biases(mixed)
    assert (
        f.text
        == "2 of 3 Conv2D biases of m are exactly 0; 1 of them feeds BatchNormalization, which makes a bias redundant."
    )
    assert f.layer == "c1"
    assert _biases(_fake_model({"d": ("Dense", np.full(3, 0.5), [])})) == []
