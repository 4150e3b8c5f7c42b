"""Keras applications: the reference analysis's Glorot limits, and a clear message when ImageNet is offline."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main
from reportgen.initializers import distribution
from reportgen.sources.keras_app import _network_failure, build_application

pytestmark = pytest.mark.slow  # every test here builds Keras applications


ROOT = Path(__file__).resolve().parent.parent


def _online() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def vgg16():  # type: ignore[no-untyped-def]
    source = build_application("VGG16", None, "VGG-16 untrained")
    yield source
    source.close()


def test_untrained_vgg16_glorot_limits_match_the_formula(vgg16) -> None:  # type: ignore[no-untyped-def]
    layers = vgg16.layers()
    assert len(layers) == 23 and layers[0].class_name == "InputLayer"
    for index in (1, -6, -3, -1):
        layer = layers[index]
        kernel, bias = layer.param("kernel"), layer.param("bias")
        assert kernel is not None and bias is not None
        assert kernel.init is not None and kernel.init.kind == "glorot_uniform"
        dist = distribution(kernel.init, kernel.shape)
        assert dist is not None
        receptive = math.prod(kernel.shape[:-2])
        fan_in, fan_out = kernel.shape[-2] * receptive, kernel.shape[-1] * receptive
        assert dist.limit == pytest.approx(math.sqrt(6.0 / (fan_in + fan_out)), rel=1e-12)
        values = vgg16.read(kernel)
        # Keras draws in float32, so the bound it enforces is the limit rounded to float32.
        assert float(np.abs(values).max()) <= float(np.float32(dist.limit))
        assert not np.any(vgg16.read(bias))
    limits = [
        distribution(layers[i].param("kernel").init, layers[i].param("kernel").shape).limit for i in (1, -6, -3, -1)
    ]
    assert [round(x, 10) for x in limits] == [0.0997509336, 0.0255155182, 0.0143384834, 0.0343131758]


def test_vgg16_graph_records_consumers(vgg16) -> None:  # type: ignore[no-untyped-def]
    layers = {layer.name: layer for layer in vgg16.layers()}
    assert layers["block1_conv1"].feeds == ("block1_conv2",)
    assert layers["fc1"].output_shape == (None, 4096)


def test_network_failure_message_is_parsed() -> None:
    exc = Exception(
        "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5: None -- [Errno -2] Name or service not known"
    )
    assert _network_failure(exc) == "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert _network_failure(ValueError("bad shape")) is None


@pytest.mark.skipif(_online(), reason="the network is reachable: Keras would download ImageNet weights")
def test_imagenet_offline_fails_fast_with_a_clear_message(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    start = time.perf_counter()
    code = main(["build", str(ROOT / "configs" / "vgg_vs_resnet.yaml"), "--output", str(tmp_path / "out")])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 6
    assert len(err) == 1
    # file:line: key path of the model whose weights are missing, then what to do
    cfg = ROOT / "configs" / "vgg_vs_resnet.yaml"
    entry = next(i for i, line in enumerate(cfg.read_text().splitlines(), 1) if line.strip() == "weights: imagenet")
    assert err[0].startswith(f"reportgen: error: {cfg}:{entry}: models[1].weights: ")
    # Every missing file at once, with the command that fetches them all, before any model is built.
    assert "model 'VGG-16 ImageNet' (keras.applications.VGG16) needs ImageNet weights " in err[0]
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in err[0]
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in err[0]
    cache = tmp_path / "keras" / "models"
    assert f"curl -fL --create-dirs -o {cache}/vgg16_weights_tf_dim_ordering_tf_kernels.h5 https://" in err[0]
    assert "or set weights: to a local copy" in err[0]
    assert not (tmp_path / "out").exists()
    assert elapsed < 60


def test_untrained_application_is_the_same_every_build(vgg16) -> None:  # type: ignore[no-untyped-def]
    """A fixed seed makes untrained weights, and so whole reports, reproducible."""
    again = build_application("VGG16", None, "VGG-16 untrained")
    other = build_application("VGG16", None, "VGG-16 untrained", seed=1)
    try:
        ref = vgg16.layers()[1].param("kernel")
        assert np.array_equal(vgg16.read(ref), again.read(ref))
        assert not np.array_equal(vgg16.read(ref), other.read(ref))
    finally:
        again.close()
        other.close()


@pytest.mark.slow
def test_mobilenet_depthwise_initializers_match_the_keras_archive(tmp_path: Path) -> None:
    """Every DepthwiseConv2D gets its depthwise_initializer, the same one the .keras reader finds."""
    import keras

    from reportgen.sources.keras_h5 import KerasArchiveSource

    source = build_application("MobileNet", None, "MobileNet untrained")
    try:
        depthwise = [layer for layer in source.layers() if layer.class_name == "DepthwiseConv2D"]
        assert len(depthwise) == 13
        app_inits = {}
        for layer in depthwise:
            kernel = layer.params[0]
            assert kernel.init is not None, layer.name
            dist = distribution(kernel.init, kernel.shape)
            assert dist is not None and float(np.abs(source.read(kernel)).max()) <= float(np.float32(dist.limit))
            app_inits[layer.name] = kernel.init.kind
        frozen = {(lay.name, p.name) for lay in source.layers() for p in lay.params if not p.trainable}
        norms = [lay for lay in source.layers() if lay.class_name == "BatchNormalization"]
        assert frozen == {(lay.name, n) for lay in norms for n in ("moving_mean", "moving_variance")}
    finally:
        source.close()
    keras.utils.set_random_seed(0)
    path = tmp_path / "mobilenet.keras"
    keras.applications.MobileNet(weights=None).save(path)
    with KerasArchiveSource(path) as archive:
        archive_inits = {
            lay.name: lay.params[0].init.kind
            for lay in archive.layers()
            if lay.class_name == "DepthwiseConv2D" and lay.params[0].init is not None
        }
    assert archive_inits == app_inits


@pytest.mark.slow
def test_drawn_application_matches_a_keras_built_one_in_distribution() -> None:
    """An untrained application is drawn, not built: same layers and initializers as Keras's own build,
    and each tensor's values from the same distribution (two-sample KS against Keras's draw)."""
    import keras
    from scipy import stats as sps

    from reportgen.init_draw import DrawnSource, open_application
    from reportgen.sources.keras_app import describe_layers

    drawn = open_application("MobileNet", None, "MobileNet untrained")
    assert isinstance(drawn, DrawnSource)
    keras.utils.set_random_seed(5)
    built_layers, arrays = describe_layers(keras.applications.MobileNet(weights=None))
    ours = [(lay.name, p.name, p.shape, p.dtype, p.init) for lay in drawn.layers() for p in lay.params]
    theirs = [(lay.name, p.name, p.shape, p.dtype, p.init) for lay in built_layers for p in lay.params]
    assert ours == theirs
    tested = 0
    for layer in drawn.layers():
        for ref in layer.params:
            mine, keras_values = drawn.read(ref), arrays[ref.key]
            assert mine.shape == keras_values.shape and mine.dtype == keras_values.dtype
            if np.ptp(keras_values) == 0:  # a constant initializer: the same constant
                assert np.array_equal(mine, keras_values)
            elif ref.size >= 2000:
                assert sps.ks_2samp(mine.ravel(), keras_values.ravel()).pvalue > 1e-4, ref.key
                tested += 1
    assert tested >= 10
