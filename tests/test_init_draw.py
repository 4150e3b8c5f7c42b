"""Untrained tensors drawn from their initializers: Keras's distributions, chunk-independent, any worker count."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from reportgen.analysis import AnalysisOptions
from reportgen.executor import DRAWN, Executors, choose_kind, reopen_recipe
from reportgen.init_draw import DRAW_CHUNK, DrawnSource, drawable
from reportgen.initializers import distribution
from reportgen.sources.base import InitSpec, LayerInfo, TensorRef


def _ref(key: str, shape: tuple[int, ...], kind: str, **params: float) -> TensorRef:
    role = "bias" if len(shape) == 1 else "kernel"
    return TensorRef(key, key.rsplit("/", 1)[-1], role, shape, "float32", InitSpec(kind, tuple(sorted(params.items()))))


def _model() -> tuple[DrawnSource, list[LayerInfo]]:
    layers = [
        LayerInfo(
            "conv",
            "Conv2D",
            0,
            (_ref("conv/kernel", (3, 3, 64, 128), "glorot_uniform"), _ref("conv/bias", (128,), "zeros")),
        ),
        LayerInfo("bn", "BatchNormalization", 1, (_ref("bn/gamma", (128,), "ones"),)),
        LayerInfo("fc", "Dense", 2, (_ref("fc/kernel", (1500, 1200), "he_normal"),)),
        LayerInfo("emb", "Embedding", 3, (_ref("emb/kernel", (300, 64), "random_normal", stddev=0.02, mean=0.5),)),
    ]
    return DrawnSource(7, layers=layers), layers


@pytest.mark.slow  # over 1.5 s
def test_values_follow_the_initializer_exactly_in_distribution() -> None:
    source, layers = _model()
    for layer in layers:
        for ref in layer.params:
            dist = distribution(ref.init, ref.shape)
            assert dist is not None
            x = source.read(ref).astype(np.float64).reshape(-1)
            assert source.read(ref).dtype == np.float32 and source.read(ref).shape == ref.shape
            if dist.family == "constant":
                assert np.all(x == dist.mean)
                continue
            # Independent oracle: SciPy's distribution with the parameters computed from the fans by hand.
            fan_in, fan_out = (9 * 64, 9 * 128) if ref.key == "conv/kernel" else (ref.shape[0], ref.shape[1])
            if ref.key == "conv/kernel":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                oracle = sps.uniform(loc=-limit, scale=2 * limit)
                assert np.abs(x).max() <= np.float32(limit)
            elif ref.key == "fc/kernel":
                base = math.sqrt(2.0 / fan_in) / 0.87962566103423978
                oracle = sps.truncnorm(-2.0, 2.0, loc=0.0, scale=base)
                assert np.abs(x).max() <= 2 * base * (1 + 1e-6)
            else:
                oracle = sps.norm(loc=0.5, scale=0.02)
            assert sps.kstest(x, oracle.cdf).pvalue > 1e-4
            assert x.std() == pytest.approx(oracle.std(), rel=0.01)


def test_chunks_do_not_depend_on_how_they_are_asked_for() -> None:
    source, layers = _model()
    ref = layers[2].params[0]
    assert ref.size > DRAW_CHUNK  # several drawn chunks
    whole = source.read(ref).reshape(-1)
    for step in (1000, 1 << 18, DRAW_CHUNK):
        assert np.array_equal(np.concatenate(list(source.iter_chunks(ref, step))), whole)
    again = DrawnSource(7).read(ref).reshape(-1)  # a worker knows only the seed and the tensor
    assert np.array_equal(again, whole)
    assert not np.array_equal(DrawnSource(8).read(ref).reshape(-1), whole)


@pytest.mark.slow  # imports TensorFlow
def test_same_distribution_as_keras_draws() -> None:
    """Keras's own initializers and the chunked draw agree (two-sample KS) on the presets applications use."""
    import keras

    for name, kind in (("GlorotUniform", "glorot_uniform"), ("HeNormal", "he_normal")):
        shape = (3, 3, 96, 160)
        ours = DrawnSource(0).read(_ref("x/kernel", shape, kind)).reshape(-1)
        theirs = np.asarray(getattr(keras.initializers, name)(seed=3)(shape)).reshape(-1)
        assert sps.ks_2samp(ours, theirs).pvalue > 1e-4
        assert np.abs(ours).max() <= np.abs(theirs).max() * 1.01


def test_orthogonal_and_integer_tensors_are_not_drawn() -> None:
    assert drawable(_ref("r/recurrent_kernel", (8, 8), "orthogonal")) is None
    ref = TensorRef("s/step", "step", "other", (), "int64", InitSpec("zeros"))
    assert drawable(ref) is None
    assert drawable(_ref("d/kernel", (4, 4), "glorot_uniform")) is not None


@pytest.mark.slow  # over 1.5 s
def test_workers_draw_the_same_numbers_as_this_process() -> None:
    source, layers = _model()
    recipe = reopen_recipe(source, None, None)
    assert recipe is not None and recipe.format == DRAWN and recipe.seed == 7
    assert choose_kind(None, recipe, 2) == "processes"
    options = AnalysisOptions(stream_elems=1 << 20)  # fc/kernel is streamed
    with Executors("inline") as ex:
        inline = ex.analyze(source, layers, options, recipe, "m")
    with Executors("processes", workers=2) as ex:
        pooled = ex.analyze(source, layers, options, recipe, "m")
    assert list(inline) == list(pooled)
    for key in inline:  # repr: NaN fields (skewness of a constant) compare equal there
        assert repr(inline[key]) == repr(pooled[key])


@pytest.mark.slow  # over 1.5 s
def test_a_large_tensor_is_split_into_values_and_spectrum_with_the_same_numbers() -> None:
    from reportgen.analysis import analyze_tensor
    from reportgen.executor import make_tasks

    source, layers = _model()
    options = AnalysisOptions(stream_elems=1 << 20)
    fc = layers[2]
    jobs = [(fc, fc.params[0]), (layers[0], layers[0].params[0])]
    tasks = make_tasks("m", reopen_recipe(source, None, None), jobs, options)
    assert [(t.part, t.jobs[0][1].key) for t in tasks] == [
        ("spectrum", "fc/kernel"),
        ("values", "fc/kernel"),
        ("all", "conv/kernel"),
    ]
    import scipy.linalg  # noqa: F401  - its BLAS too computes on one thread, as in every worker
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        whole = analyze_tensor(source, fc, fc.params[0], options)
    assert whole.spectral is not None and whole.stats.count == 1500 * 1200
    with Executors("processes", workers=2) as ex:
        pooled = ex.analyze(source, layers, options, reopen_recipe(source, None, None), "m")
    assert repr(pooled[("fc", "kernel")]) == repr(whole)


def test_a_planned_source_keeps_the_drawn_initializers() -> None:
    """Workers draw a wrapped source's tensors only while every tensor keeps the initializer drawn from."""
    from reportgen.init_plan import InitPlan, InitRule, PlannedSource

    source, layers = _model()
    planned = PlannedSource(source, InitPlan())
    recipe = reopen_recipe(planned, None, None)
    assert recipe is not None and recipe.format == DRAWN
    rule = InitRule(("fc",), (("kernel", InitSpec("he_uniform", origin="config")),))
    stated = PlannedSource(DrawnSource(7, layers=layers), InitPlan(rules=(rule,)))
    assert stated.layers()[2].params[0].init.kind == "he_uniform"
    assert reopen_recipe(stated, None, None) is None  # the values stay Keras's draw, made in this process
    ref = stated.layers()[2].params[0]
    assert np.array_equal(stated.read(ref), source.read(source.drawn_as(ref)))


def test_a_keras_lstm_bias_is_drawn_with_ones_on_the_forget_gate() -> None:
    ref = TensorRef("lstm/bias", "bias", "bias", (4 * 5,), "float32", InitSpec("keras_lstm_bias"))
    values = DrawnSource(0).read(ref)
    assert values.tolist() == [0.0] * 5 + [1.0] * 5 + [0.0] * 10


@pytest.mark.slow  # over 1.5 s
def test_models_sharing_one_queue_get_the_numbers_each_gets_alone() -> None:
    """Two reopenable models in one worker queue: each model's analyses are those of its own inline run."""
    from reportgen.executor import ModelJobs

    first, layers = _model()
    second = DrawnSource(11, layers=layers)
    options = AnalysisOptions(stream_elems=1 << 20)
    models = [
        ModelJobs(src, tuple(layers), reopen_recipe(src, None, None), name)
        for name, src in (("a", first), ("b", second))
    ]
    with Executors("processes", workers=2) as ex:
        shared = ex.analyze_many(models, options)
    for model, found in zip(models, shared, strict=True):
        with Executors("inline") as ex:
            alone = ex.analyze(model.source, layers, options, None, model.label)
        assert list(found) == list(alone)
        assert repr(found) == repr(alone)
    assert repr(shared[0]) != repr(shared[1])  # different seeds: the results were not mixed up
