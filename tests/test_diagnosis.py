"""Verdicts and alerts on tensors whose history the test knows: fresh draws, edits, and a trained CNN."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from reportgen import initializers
from reportgen.analysis import AnalysisOptions, analyze_tensor
from reportgen.diagnosis import BN_BIAS_NOTE, diagnose_model, layer_verdict
from reportgen.initcheck import check_init, expected_kurtosis, fresh_draw_failures
from reportgen.sources.base import InitSpec, LayerInfo, SourceInfo, TensorRef
from reportgen.sources.keras_app import InMemorySource, describe_layers
from reportgen.stats import compute_stats

OPTIONS = AnalysisOptions(bins=20)


def draw(spec: InitSpec, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Draw a tensor with numpy from the distribution the spec defines (independently of Keras)."""
    dist = initializers.distribution(spec, shape)
    rng = np.random.default_rng(seed)
    if dist.family == "uniform":
        x = rng.uniform(dist.mean - dist.limit, dist.mean + dist.limit, shape)
    elif dist.family == "truncated_normal":
        x = sps.truncnorm.rvs(-2, 2, loc=dist.mean, scale=dist.base_std, size=shape, random_state=rng)
    else:
        x = rng.normal(dist.mean, dist.std, shape)
    return x.astype(np.float32)


def tensor(layer: str, name: str, role: str, values: np.ndarray, init: str | None, **params) -> TensorRef:
    spec = InitSpec(init, tuple(sorted(params.items()))) if init else None
    return TensorRef(f"{layer}/{name}", name, role, values.shape, str(values.dtype), spec)


def build(spec: list[tuple[str, str, tuple[str, ...], list[tuple[str, str, np.ndarray, str | None]]]]):
    """Make LayerInfo records and analyses from (layer, class, feeds, [(param, role, values, init)])."""
    layers, arrays = [], {}
    for index, (name, cls, feeds, params) in enumerate(spec):
        refs = []
        for pname, role, values, init in params:
            refs.append(tensor(name, pname, role, values, init))
            arrays[f"{name}/{pname}"] = values
        layers.append(LayerInfo(name, cls, index, tuple(refs), feeds=feeds))
    src = InMemorySource(SourceInfo("test", "built in the test"), layers, arrays)
    analyses = {(la.name, r.name): analyze_tensor(src, la, r, OPTIONS) for la in layers for r in la.params}
    return layers, analyses


def dense(name: str, kernel: np.ndarray, init: str | None = "glorot_uniform", feeds=(), bias=None):
    params = [("kernel", "kernel", kernel, init)]
    if bias is not None:
        params.append(("bias", "bias", bias, "zeros"))
    return (name, "Dense" if kernel.ndim == 2 else "Conv2D", feeds, params)


def codes(diag, code: str):
    return [a for a in diag.alerts if a.code == code]


FRESH = [
    ("glorot_uniform", (3, 3, 32, 64)),
    ("he_normal", (256, 128)),
    ("glorot_normal", (3, 3, 16, 32)),
    ("lecun_uniform", (512, 10)),
    ("truncated_normal", (128, 256)),
    ("random_normal", (64, 64)),
]


@pytest.mark.parametrize("kind,shape", FRESH)
def test_fresh_draw_is_at_init_and_edited_copies_moved(kind, shape):
    w = draw(InitSpec(kind), shape, seed=1)
    layers, analyses = build([dense("l", w, kind)])
    check = analyses[("l", "kernel")].init_check
    assert fresh_draw_failures(check) == []
    assert check.ks_pvalue > 1e-3 and abs(check.std_ratio - 1) < 0.05
    if check.bounded:
        assert check.inside_share == 1.0
    assert layer_verdict(layers[0], analyses).status == "at_init"

    layers, analyses = build([dense("l", w * 1.5, kind)])
    v = layer_verdict(layers[0], analyses)
    assert v.status == "moved" and "std ratio 1.5" in v.reason
    assert dict(v.moved_by)["std_ratio"] == pytest.approx(1.5, rel=0.05)

    # Added structure at the same scale: a rank-1 +-c std pattern, the draw shrunk to keep the std.
    # (For a uniform, a = 0.5 would rebuild the uniform exactly, so it gets a = 0.6.)
    rng = np.random.default_rng(2)
    rows, cols = rng.choice([-1, 1], w.shape[:-1]).reshape(-1), rng.choice([-1, 1], w.shape[-1])
    sign = np.outer(rows, cols).reshape(w.shape)
    a = 0.6 if check.family == "uniform" else 0.5
    structured = (a * w + math.sqrt(1 - a * a) * w.std() * sign).astype(np.float32)
    layers, analyses = build([dense("l", structured, kind)])
    v = layer_verdict(layers[0], analyses)
    assert v.status == "moved" and "KS D=" in v.reason
    assert abs(dict(v.moved_by)["std_ratio"] - 1) < 0.05


def test_expected_kurtosis_matches_independent_integration():
    grid = np.linspace(-2, 2, 200_001)
    pdf = np.exp(-(grid**2) / 2)
    m2 = np.trapezoid(grid**2 * pdf, grid) / np.trapezoid(pdf, grid)
    m4 = np.trapezoid(grid**4 * pdf, grid) / np.trapezoid(pdf, grid)
    trunc = initializers.distribution(InitSpec("he_normal"), (100, 10))
    assert expected_kurtosis(trunc) == pytest.approx(m4 / m2**2 - 3, abs=1e-6)
    assert expected_kurtosis(trunc) == pytest.approx(-0.6345, abs=1e-4)
    assert expected_kurtosis(initializers.distribution(InitSpec("he_uniform"), (100, 10))) == -1.2
    assert expected_kurtosis(initializers.distribution(InitSpec("random_normal"), (100, 10))) == 0.0


def test_large_tensor_is_subsampled_deterministically():
    w = draw(InitSpec("glorot_uniform"), (1000, 1000), seed=3)
    dist = initializers.distribution(InitSpec("glorot_uniform"), w.shape)
    stats = compute_stats(w)
    a = check_init(w, dist, stats, sample_size=50_000)
    b = check_init(w, dist, stats, sample_size=50_000)
    assert a.ks_sample == 50_000 and a.n_values == 1_000_000
    assert a == b and fresh_draw_failures(a) == []
    moved = check_init(w * 1.05, dist, compute_stats(w * 1.05), sample_size=50_000)
    assert moved.ks_pvalue < 1e-3 and moved.inside_share < 0.99


def test_constant_init_share():
    zeros = np.zeros(64, np.float32)
    dist = initializers.distribution(InitSpec("zeros"), zeros.shape)
    assert check_init(zeros, dist, compute_stats(zeros)).const_share == 1.0
    zeros[:16] = 0.01
    check = check_init(zeros, dist, compute_stats(zeros))
    assert check.const_share == 0.75
    assert fresh_draw_failures(check) == ["25.0% of values differ from the constant"]


# ---------------------------------------------------------------- alerts from the numbers


def test_fresh_model_raises_no_alerts():
    k = draw(InitSpec("glorot_uniform"), (3, 3, 8, 16))
    diag = diagnose_model("m", *build([dense("a", k, bias=np.zeros(16, np.float32))]))
    assert diag.alerts == ()
    assert diag.summary == "all 1 layers with a known initializer look untrained (at initialisation)"
    assert diag.looks_trained is False


def test_nan_is_critical():
    k = draw(InitSpec("glorot_uniform"), (64, 32))
    k[3, 4] = np.nan
    (alert,) = codes(diagnose_model("m", *build([dense("a", k)])), "non-finite")
    assert alert.severity == "critical" and dict(alert.numbers)["nan"] == 1
    assert (alert.model, alert.layer, alert.param) == ("m", "a", "kernel")


def test_all_zero_kernel_is_constant_not_dead_units():
    diag = diagnose_model("m", *build([dense("a", np.zeros((3, 3, 4, 8), np.float32))]))
    (alert,) = codes(diag, "constant-tensor")
    assert alert.severity == "critical"
    assert codes(diag, "dead-units") == []


def test_three_dead_filters():
    k = draw(InitSpec("glorot_uniform"), (3, 3, 8, 16))
    k[..., [2, 7, 11]] = 0.0
    (alert,) = codes(diagnose_model("m", *build([dense("a", k)])), "dead-units")
    assert dict(alert.numbers)["dead_units"] == 3 and dict(alert.numbers)["units"] == 16
    assert alert.severity == "warning"


@pytest.mark.parametrize(
    "factor,code,severity",
    [
        (20.0, "exploding-scale", "info"),  # healthy trained weights reach 38.9x (thresholds.py)
        (200.0, "exploding-scale", "warning"),
        (0.05, "collapsed-scale", "info"),
        (0.005, "collapsed-scale", "warning"),
    ],
)
def test_scale_against_init(factor, code, severity):
    k = draw(InitSpec("he_normal"), (128, 64)) * factor
    (alert,) = codes(diagnose_model("m", *build([dense("a", k, "he_normal")])), code)
    assert dict(alert.numbers)["std_ratio"] == pytest.approx(factor, rel=0.05)
    assert alert.severity == severity


def test_bias_scale_is_never_alerted():
    """A bias's size follows the data (folded BatchNorm shifts reach 100x PyTorch's bound): no scale alert."""
    k = draw(InitSpec("he_normal"), (128, 64)) * 1.5
    bias = np.random.default_rng(1).normal(0, 5.0, 64).astype(np.float32)
    layer = ("a", "Dense", (), [("kernel", "kernel", k, "he_normal"), ("bias", "bias", bias, "zeros")])
    diag = diagnose_model("m", *build([layer]))
    assert [a.code for a in diag.alerts if a.param == "bias"] == []


def test_one_huge_outlier():
    k = draw(InitSpec("glorot_uniform"), (256, 128))
    k[5, 5] = 50 * k.std()
    (alert,) = codes(diagnose_model("m", *build([dense("a", k)])), "extreme-outliers")
    assert dict(alert.numbers)["outlier_factor"] > 40


def test_float16_overflow_risk():
    k = draw(InitSpec("he_normal"), (64, 64)).astype(np.float16)
    k[0, 0] = 60000.0
    (alert,) = codes(diagnose_model("m", *build([dense("a", k, "he_normal")])), "fp16-overflow-risk")
    assert alert.severity == "warning" and dict(alert.numbers)["max_abs"] == 60000.0
    same32 = k.astype(np.float32)
    assert codes(diagnose_model("m", *build([dense("a", same32, "he_normal")])), "fp16-overflow-risk") == []


def test_zero_bias_before_batchnorm_is_explained_and_elsewhere_flagged():
    moved = draw(InitSpec("glorot_uniform"), (3, 3, 8, 16)) * 1.5
    bias = np.zeros(16, np.float32)
    bn = ("bn", "BatchNormalization", (), [("gamma", "gamma", np.ones(16, np.float32), "ones")])
    diag = diagnose_model("m", *build([dense("conv", moved, feeds=("bn",), bias=bias), bn]))
    assert codes(diag, "bias-at-init") == []
    assert BN_BIAS_NOTE in diag.verdicts[0].notes and diag.verdicts[0].status == "moved"
    relu = ("act", "ReLU", (), [])
    diag = diagnose_model("m", *build([dense("conv", moved, feeds=("act",), bias=bias), relu]))
    (alert,) = codes(diag, "bias-at-init")
    assert alert.param == "bias" and alert.severity == "warning"
    assert diag.verdicts[0].notes == ()


def test_model_summary_order_and_at_init_alert():
    g = InitSpec("glorot_uniform")
    bad = draw(g, (32, 16), seed=4) * 1.5
    bad[0, 0] = np.nan
    outlier = draw(g, (256, 64), seed=5) * 1.5
    outlier[1, 1] = 100 * outlier.std()
    spec = [
        dense("a", draw(g, (64, 32), seed=3)),  # untouched
        dense("b", outlier),
        dense("c", bad),
        dense("d", draw(g, (16, 10), seed=6) * 2.0),
        ("flat", "Flatten", (), []),
    ]
    diag = diagnose_model("m", *build(spec))
    assert [v.status for v in diag.verdicts] == ["at_init", "moved", "moved", "moved"]
    assert diag.looks_trained is True
    assert diag.summary == "1 of 4 layers look untrained (at initialisation)"
    head = [(a.severity, a.code, a.layer) for a in diag.alerts[:3]]
    assert head == [
        ("critical", "non-finite", "c"),
        ("warning", "at-init-in-trained-model", "a"),
        ("info", "extreme-outliers", "b"),
    ]
    (at_init,) = codes(diag, "at-init-in-trained-model")
    assert "3 of 4 layers" in at_init.message and "may be" in at_init.message
    assert dict(at_init.numbers)["at_init_layers"] == 1 and dict(at_init.numbers)["moved_layers"] == 3
    rank = {"critical": 0, "warning": 1, "info": 2}
    assert [rank[a.severity] for a in diag.alerts] == sorted(rank[a.severity] for a in diag.alerts)


def test_all_moved_summary():
    g = InitSpec("glorot_uniform")
    diag = diagnose_model("m", *build([dense("a", draw(g, (64, 32)) * 2), dense("b", draw(g, (32, 8)) * 3)]))
    assert diag.summary == "all 2 layers with a known initializer moved away from it"
    assert codes(diag, "at-init-in-trained-model") == []


def test_unknown_init_gives_an_honest_hint():
    rng = np.random.default_rng(8)
    heavy = (rng.standard_t(3, (256, 128)) * 0.02).astype(np.float32)
    flat = rng.uniform(-0.1, 0.1, (256, 128)).astype(np.float32)
    diag = diagnose_model("m", *build([dense("h", heavy, None), dense("u", flat, None)]))
    h, u = diag.verdicts
    assert h.status == "unknown_init" and h.hint and h.reason.endswith("(hint)")
    assert "heavier tails" in h.reason and "sign of training" in h.reason
    # A uniform init keeps its kurtosis near -1.1 through training, so flatness is no sign of an untrained layer.
    assert "cannot tell" in u.reason and "untrained" not in u.reason and u.evidence is None
    assert diag.looks_trained is None and diag.unknown_init == 2


def test_layer_with_unread_params_has_no_weights():
    k = draw(InitSpec("glorot_uniform"), (8, 4))
    layers, _ = build([dense("a", k)])
    assert layer_verdict(layers[0], {}).status == "no_weights"
    assert diagnose_model("m", layers, {}).no_weights == 1


# ---------------------------------------------------------------- a CNN trained in the test


@pytest.fixture(scope="module")
def digits_cnn():
    """Train a small CNN on scikit-learn's 8x8 digits for 3 epochs with conv2 frozen at init."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, activation="relu", name="conv1"),
            layers.Conv2D(16, 3, activation="relu", name="conv2", trainable=False),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="fc1"),
            layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    infos, arrays = describe_layers(model)
    src = InMemorySource(SourceInfo("keras-application", "digits CNN"), infos, arrays)
    analyses = {(lay.name, r.name): analyze_tensor(src, lay, r, OPTIONS) for lay in infos for r in lay.params}
    return infos, analyses, history.history["accuracy"][-1]


@pytest.mark.slow
def test_trained_cnn_with_one_frozen_layer(digits_cnn):
    layers, analyses, accuracy = digits_cnn
    assert accuracy > 0.85  # the other layers really did learn
    diag = diagnose_model("digits", layers, analyses)
    status = {v.layer: v.status for v in diag.verdicts}
    assert status == {"conv1": "moved", "conv2": "at_init", "fc1": "moved", "out": "moved"}
    assert diag.looks_trained is True
    assert diag.summary == "1 of 4 layers look untrained (at initialisation)"
    (alert,) = codes(diag, "at-init-in-trained-model")
    assert (alert.layer, alert.severity, alert.param) == ("conv2", "warning", "kernel")
    assert diag.alerts[0] == alert
    # The frozen layer's zero bias is consistent with its frozen kernel, so it is not flagged.
    assert [a.layer for a in codes(diag, "bias-at-init")] == []
    moved = {v.layer: dict(v.moved_by) for v in diag.verdicts if v.status == "moved"}
    assert all(m["ks_pvalue"] < 1e-3 or not 0.9 <= m["std_ratio"] <= 1.1 for m in moved.values())
    frozen = next(v for v in diag.verdicts if v.layer == "conv2").evidence
    assert frozen.ks_pvalue > 1e-3 and math.isclose(frozen.std_ratio, 1.0, abs_tol=0.1)


def test_bias_only_training_is_noted() -> None:
    """A kernel at its initial draw with a trained bias gets a note saying so, not an alert."""
    from reportgen.analysis import AnalysisOptions, analyze_tensor
    from reportgen.diagnosis import diagnose_model
    from reportgen.initializers import spec_from_name
    from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef
    from reportgen.sources.keras_app import InMemorySource

    rng = np.random.default_rng(0)
    limit = np.sqrt(6.0 / (64 + 32))
    arrays = {
        "d/kernel": rng.uniform(-limit, limit, (64, 32)).astype(np.float32),
        "d/bias": rng.normal(0, 0.1, 32).astype(np.float32),
    }
    refs = (
        TensorRef("d/kernel", "kernel", "kernel", (64, 32), "float32", spec_from_name("glorot_uniform")),
        TensorRef("d/bias", "bias", "bias", (32,), "float32", spec_from_name("zeros")),
    )
    layer = LayerInfo("d", "Dense", 0, refs)
    source = InMemorySource(SourceInfo("test", "test"), [layer], arrays)
    analyses = {("d", r.name): analyze_tensor(source, layer, r, AnalysisOptions()) for r in refs}
    diag = diagnose_model("m", [layer], analyses)
    (v,) = diag.verdicts
    assert v.status == "at_init"
    assert any(n.startswith("bias moved (100% of values left their initial constant)") for n in v.notes)
    assert not [a for a in diag.alerts if a.code == "bias-at-init"]


def test_two_of_four_redrawn_layers_are_alerted_whatever_the_share():
    """Half the layers at their draw: the model is not 'trained' by majority, yet each is reported with counts."""
    g = InitSpec("glorot_uniform")
    spec = [
        dense("a", draw(g, (64, 32), seed=1) * 2.0),
        dense("b", draw(g, (32, 32), seed=2)),
        dense("c", draw(g, (32, 32), seed=3)),
        dense("d", draw(g, (32, 10), seed=4) * 2.0),
    ]
    diag = diagnose_model("m", *build(spec))
    assert diag.looks_trained is False
    alerts = codes(diag, "at-init-in-trained-model")
    assert [a.layer for a in alerts] == ["b", "c"]
    assert all("2 of 4 layers" in a.message and "(2 at init)" in a.message for a in alerts)


def test_only_trainable_float_tensors_are_judged():
    """Buffers, integer index vectors and tensors marked not trainable get no verdict and no alert."""
    ids = np.arange(512, dtype=np.int64).reshape(1, 512)
    const = np.zeros(258, np.float32)
    inf = np.array(-np.inf, np.float32)
    layers, analyses = build([("pos", "Unknown", (), [("position_ids", "other", ids, None)])])
    assert diagnose_model("m", layers, analyses).verdicts == ()
    layers, analyses = build(
        [("k", "Unknown", (), [("c", "kernel", const, None)]), ("m", "Unknown", (), [("x", "other", inf, None)])]
    )
    layers = [
        LayerInfo(la.name, la.class_name, la.index, tuple(replace(p, trainable=False) for p in la.params))
        for la in layers
    ]
    diag = diagnose_model("m", layers, analyses)
    assert diag.verdicts == () and diag.alerts == ()


def test_inf_in_a_tensor_of_unknown_role_is_not_critical():
    """A -inf operand of a graph op is a legitimate constant; only a weight with Inf is critical."""
    layers, analyses = build(
        [("max", "Unknown", (), [("input0", "other", np.array([-np.inf, 0.0], np.float32), None)])]
    )
    (alert,) = diagnose_model("m", layers, analyses).alerts
    assert (alert.code, alert.severity) == ("non-finite", "info")


def test_fresh_norm_weight_of_ones_is_not_a_constant_tensor():
    ln = ("ln", "LayerNorm", (), [("weight", "gamma", np.ones(64, np.float32), None)])
    diag = diagnose_model("m", *build([ln]))
    assert codes(diag, "constant-tensor") == []


def test_keras_lstm_fresh_bias_is_at_init():
    """unit_forget_bias: zeros with ones on the forget gate's quarter is the fresh LSTM bias, not 'moved'."""
    bias = np.zeros(64, np.float32)
    bias[16:32] = 1.0
    lstm = ("lstm", "LSTM", (), [("bias", "bias", bias, "keras_lstm_bias")])
    (verdict,) = diagnose_model("m", *build([lstm])).verdicts
    assert verdict.status == "at_init"
    bias[0] = 0.5
    (verdict,) = diagnose_model("m", *build([lstm])).verdicts
    assert verdict.status == "moved"


def test_all_zero_bias_with_random_init_is_flagged_unless_batchnorm_follows():
    """PyTorch draws biases from a uniform: an exactly-zero bias beside a moved kernel was zeroed or not loaded."""
    w = draw(InitSpec("glorot_uniform"), (64, 32)) * 2.0
    zero = np.zeros(32, np.float32)
    layer = ("fc", "Linear", (), [("weight", "kernel", w, "glorot_uniform"), ("bias", "bias", zero, "random_uniform")])
    (alert,) = codes(diagnose_model("m", *build([layer])), "zero-bias")
    assert alert.severity == "warning" and "may have been" in alert.message
    bn = ("bn", "BatchNorm", (), [("weight", "gamma", np.ones(32, np.float32) * 1.1, "ones")])
    diag = diagnose_model("m", *build([layer, bn]))  # flat file: the next layer, of the bias's width
    assert codes(diag, "zero-bias") == [] and any("BatchNormalization" in n for n in diag.verdicts[0].notes)


def test_alpha_alert_needs_enough_eigenvalues():
    """A 3x3x3 kernel has 27 eigenvalues at most: its alpha is not used for alerts or hints."""
    rng = np.random.default_rng(3)
    k = (rng.standard_t(2, (3, 3, 3, 27)) * 0.1).astype(np.float32)
    diag = diagnose_model("m", *build([dense("c", k, None)]))
    assert codes(diag, "alpha-out-of-band") == [] and "alpha" not in diag.verdicts[0].reason
