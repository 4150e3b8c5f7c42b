"""TorchSource and OnnxSource: state dicts, hostile pickles, ONNX graphs and external data kept in bounds."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from reportgen.errors import SourceError

# ---------------------------------------------------------------- PyTorch


def _small_net():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize("zip_format", [True, False])
def test_state_dict_layers_roles_and_values(tmp_path: Path, zip_format: bool) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    net = _small_net()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    src = TorchSource(path)
    layers = src.layers()
    assert [(layer.name, layer.class_name, layer.type_source) for layer in layers] == [
        ("0", "Conv2d", "inferred"),
        ("1", "BatchNorm", "inferred"),
        ("3", "Linear", "inferred"),
    ]
    assert [(p.name, p.role, p.shape) for p in layers[1].params] == [
        ("weight", "gamma", (4,)),
        ("bias", "beta", (4,)),
        ("running_mean", "moving_mean", (4,)),
        ("running_var", "moving_variance", (4,)),
        ("num_batches_tracked", "other", ()),
    ]
    assert [(p.role, p.shape, p.layout) for p in layers[0].params] == [
        ("kernel", (4, 3, 3, 3), "torch"),
        ("bias", (4,), "torch"),
    ]
    state = net.state_dict()
    for layer in layers:
        for ref in layer.params:
            got = src.read(ref)
            assert str(got.dtype) == ref.dtype
            np.testing.assert_array_equal(got, state[ref.key].numpy())
            np.testing.assert_array_equal(
                np.concatenate(list(src.iter_chunks(ref, 7)) or [np.zeros(0)]),
                state[ref.key].numpy().reshape(-1),
            )
    assert src.info.format == "pytorch"


def test_bfloat16_state_dict(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    weight = torch.randn(6, 4).to(torch.bfloat16)
    path = tmp_path / "bf16.pt"
    torch.save({"fc.weight": weight, "fc.bias": torch.zeros(6, dtype=torch.bfloat16)}, path)
    src = TorchSource(path)
    ref = src.layers()[0].param("weight")
    assert ref is not None and ref.dtype == "bfloat16"
    got = src.read(ref)
    assert got.dtype.name == "bfloat16"
    np.testing.assert_array_equal(got.astype(np.float64), weight.float().numpy().astype(np.float64))


def test_mapped_tensors_stream_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources import torch_file

    base = torch.arange(40, dtype=torch.float32).reshape(5, 8)
    state = {
        "a.weight": base,
        "b.weight": base[1:3],  # a view with a storage offset into a's storage
        "c.weight": base.t(),  # not contiguous: served from the memory map instead
        "d.weight": torch.randn(3, 4).to(torch.bfloat16),
    }
    path = tmp_path / "views.pt"
    torch.save(state, path)
    streamed: list[str] = []
    real = torch_file.iter_file_chunks

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        streamed.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_file, "iter_file_chunks", spy)
    src = torch_file.TorchSource(path)
    for layer in src.layers():
        ref = layer.params[0]
        want = state[ref.key].float().numpy().reshape(-1)
        got = np.concatenate(list(src.iter_chunks(ref, max_elems=3))).astype(np.float32)
        np.testing.assert_array_equal(got, want)
    assert streamed == ["a.weight", "b.weight", "d.weight"]


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state", "model_state_dict", "module", "net"])
def test_checkpoint_wrappers_are_unwrapped(tmp_path: Path, key: str) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    path = tmp_path / "ckpt.pth"
    torch.save({key: {"module.fc.weight": torch.ones(2, 3)}, "epoch": 3}, path)
    src = TorchSource(path)
    assert [(layer.name, layer.params[0].role) for layer in src.layers()] == [("fc", "kernel")]
    assert src.info.description.endswith(f"(checkpoint[{key!r}]); not read: checkpoint['epoch']")


def test_training_checkpoint_layouts(tmp_path: Path) -> None:
    """A Lightning-style nested wrapper with optimizer state beside it: the model's tensors only, the rest named."""
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    net = _small_net()
    opt = torch.optim.Adam(net.parameters())
    net(torch.zeros(2, 3, 8, 8)).sum().backward()
    opt.step()
    path = tmp_path / "last.ckpt"
    torch.save({"model": {"state_dict": net.state_dict()}, "optimizer": opt.state_dict(), "epoch": 7}, path)
    src = TorchSource(path)
    keys = [p.key for layer in src.layers() for p in layer.params]
    assert keys == list(net.state_dict())
    assert "(checkpoint['model']['state_dict'])" in src.info.description
    assert "not read: checkpoint['optimizer'], checkpoint['epoch']" in src.info.description


def test_buffers_are_not_trainable(tmp_path: Path) -> None:
    """Running statistics, the batch counter, position ids and a causal mask are buffers; parameters are not."""
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    net = _small_net()
    state = dict(net.state_dict())
    state["embeddings.position_ids"] = torch.arange(16).unsqueeze(0)
    state["embeddings.word_embeddings.weight"] = torch.randn(30, 8)
    state["embeddings.LayerNorm.weight"] = torch.ones(8)
    state["embeddings.LayerNorm.bias"] = torch.zeros(8)
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 4, 4))
    state["h.0.attn.c_attn.bias"] = torch.zeros(24)
    state["rotary.inv_freq"] = torch.rand(4)
    state["head.stft.forward_basis_buffer"] = torch.randn(10, 1, 8)
    path = tmp_path / "buffers.pt"
    torch.save(state, path)
    refs = {p.key: p for layer in TorchSource(path).layers() for p in layer.params}
    frozen = {k for k, r in refs.items() if not r.trainable}
    assert frozen == {
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "embeddings.position_ids",
        "h.0.attn.bias",
        "rotary.inv_freq",
        "head.stft.forward_basis_buffer",
    }
    # The names the model registered as buffers are exactly the ones marked.
    assert {k for k, _ in net.named_buffers()} <= frozen
    assert (refs["embeddings.LayerNorm.weight"].role, refs["embeddings.LayerNorm.bias"].role) == ("gamma", "beta")
    assert (refs["1.weight"].role, refs["1.bias"].role) == ("gamma", "beta")
    assert refs["embeddings.word_embeddings.weight"].role == "embedding"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], r"list\.pt: not a state dict"),
        ({"fc.weight": 3}, r"list\.pt: no tensors in the state dict \(not read: state dict\['fc.weight'\] \(a int\)\)"),
        ({}, r"list\.pt: the state dict is empty"),
    ],
)
def test_non_state_dicts_are_refused(tmp_path: Path, payload: object, message: str) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    path = tmp_path / "list.pt"
    torch.save(payload, path)
    with pytest.raises(SourceError, match=message):
        TorchSource(path)


class _Hostile:
    """Pickles to a call that would create a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class _HostileOpen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch-zip", "torch-legacy", "pickle", "open"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    evil = _HostileOpen(marker) if writer == "open" else _Hostile(marker)
    payload = {"fc.weight": torch.zeros(2), "x": evil}
    if writer == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer != "torch-legacy")
    with pytest.raises(SourceError) as caught:
        TorchSource(path)
    assert str(caught.value).startswith(f"{path}: refused: the file holds objects other than tensors")
    assert "weights_only load failed" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 4
    assert not marker.exists()


def test_torch_load_always_gets_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    calls: list[dict[str, object]] = []
    real = torch.load

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    for zip_format in (True, False):
        path = tmp_path / f"w{zip_format}.pt"
        torch.save({"fc.weight": torch.ones(2, 2)}, path, _use_new_zipfile_serialization=zip_format)
        TorchSource(path)
    assert calls and all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls)
    assert [c.get("mmap") for c in calls] == [True, False]


def test_corrupt_torch_file_is_a_source_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    path = tmp_path / "junk.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError, match=r"junk\.pt: "):
        TorchSource(path)


def test_missing_extras_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reportgen.sources.onnx_file import OnnxSource
    from reportgen.sources.torch_file import TorchSource

    path = tmp_path / "m.pt"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(
        SourceError,
        match=r"m\.pt: reading PyTorch files needs the optional extra: "
        r"pip install 'reportgen\[torch\]'",
    ):
        TorchSource(path)
    with pytest.raises(
        SourceError,
        match=r"m\.pt: reading ONNX files needs the optional extra: "
        r"pip install 'reportgen\[onnx\]'",
    ):
        OnnxSource(path)


# ---------------------------------------------------------------- ONNX


def _onnx_model(onnx):  # type: ignore[no-untyped-def]
    """Conv (initializers named by the exporter) -> Relu -> Flatten -> Gemm (torch-style names)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    arrays = {
        "onnx::Conv_5": rng.standard_normal((4, 1, 3, 3)).astype("f4"),
        "onnx::Conv_6": rng.standard_normal(4).astype("f4"),
        "fc.weight": rng.standard_normal((3, 64)).astype("f4"),
        "fc.bias": rng.standard_normal(3).astype("f4"),
    }
    nodes = [
        helper.make_node("Conv", ["x", "onnx::Conv_5", "onnx::Conv_6"], ["c"], name="/conv1/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="/flatten/Flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(a, name) for name, a in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, arrays


def _check_layers(src, arrays: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    layers = src.layers()
    assert [(layer.name, layer.class_name) for layer in layers] == [("/conv1/Conv", "Conv"), ("fc", "Gemm")]
    conv, fc = layers
    assert [(p.key, p.name, p.role, p.shape) for p in conv.params] == [
        ("onnx::Conv_5", "weight", "kernel", (4, 1, 3, 3)),
        ("onnx::Conv_6", "bias", "bias", (4,)),
    ]
    assert [(p.name, p.role, p.layout) for p in fc.params] == [
        ("weight", "kernel", "torch"),
        ("bias", "bias", "torch"),
    ]
    assert conv.feeds == ("fc",)
    for layer in layers:
        for ref in layer.params:
            np.testing.assert_array_equal(src.read(ref), arrays[ref.key])
            np.testing.assert_array_equal(np.concatenate(list(src.iter_chunks(ref, 5))), arrays[ref.key].reshape(-1))


def test_onnx_initializers_become_layers(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    model, arrays = _onnx_model(onnx)
    path = tmp_path / "tiny.onnx"
    onnx.save_model(model, str(path))
    src = OnnxSource(path)
    _check_layers(src, arrays)
    assert src.info.format == "onnx"
    assert src.info.files == (path,)


def test_onnx_external_data_in_a_sibling_file(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    model, arrays = _onnx_model(onnx)
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    assert (tmp_path / "ext.weights").stat().st_size > 0
    src = OnnxSource(path)
    _check_layers(src, arrays)
    assert src.info.files == (path, (tmp_path / "ext.weights").resolve())


def _hostile_onnx(onnx, folder: Path, location: str, length: int = 16, offset: int = 0) -> Path:  # type: ignore[no-untyped-def]
    """A model whose one initializer claims its bytes live at location."""
    from onnx import TensorProto, helper

    tensor = TensorProto(name="fc.weight", data_type=TensorProto.FLOAT, dims=[length // 4])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["fc.weight"], ["y"])],
        "hostile",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [length // 4])],
        initializer=[tensor],
    )
    path = folder / "model.onnx"
    # Serialised directly: onnx.save_model would try to write the external data itself.
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path: Path, how: str) -> None:
    onnx = pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-0123456789")
    folder = tmp_path / "model"
    folder.mkdir()
    location = {"dotdot": "../secret.txt", "absolute": str(secret), "symlink": "link.bin"}[how]
    if how == "symlink":
        (folder / "link.bin").symlink_to(secret)
    path = _hostile_onnx(onnx, folder, location)
    with pytest.raises(SourceError) as caught:
        OnnxSource(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: initializer 'fc.weight': refused external data location")
    assert "TOPSECRET" not in message


def test_onnx_external_data_beyond_the_file_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    path = _hostile_onnx(onnx, tmp_path, "w.bin", length=16, offset=8)
    with pytest.raises(SourceError, match=r"model\.onnx: initializer 'fc.weight': external data offset 8 \+ length 16"):
        OnnxSource(path)
    ok = _hostile_onnx(onnx, tmp_path, "w.bin", length=16, offset=0)
    src = OnnxSource(ok)
    assert src.read(src.layers()[0].params[0]).tolist() == [0.0] * 4


def test_onnx_garbage_is_a_source_error(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    with pytest.raises(SourceError, match=r"junk\.onnx: cannot read as ONNX"):
        OnnxSource(path)


def _constants_model(onnx):  # type: ignore[no-untyped-def]
    """Weights as Constant nodes (one inside an If branch) beside graph constants that training never touches."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    arrays = {
        "conv.weight": rng.standard_normal((4, 1, 3, 3)).astype("f4"),
        "w_mm": rng.standard_normal((16, 3)).astype("f4"),
        "b_mm": rng.standard_normal(3).astype("f4"),
        "shape": np.array([1, 16], dtype=np.int64),
        "gelu_half": np.array(0.5, dtype="f4"),
        "neg_inf": np.array(-np.inf, dtype="f4"),
        "bn_scale": rng.uniform(0.5, 1.5, 4).astype("f4"),
        "bn_bias": rng.standard_normal(4).astype("f4"),
        "bn_mean": rng.standard_normal(4).astype("f4"),
        "bn_var": rng.uniform(0.5, 2, 4).astype("f4"),
        "branch.weight": rng.standard_normal((3, 3)).astype("f4"),
    }

    def const(name: str):  # type: ignore[no-untyped-def]
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arrays[name], name))

    then_graph = helper.make_graph(
        [const("branch.weight"), helper.make_node("MatMul", ["y", "branch.weight"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 3])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["y"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 3])],
    )
    nodes = [
        const("conv.weight"),
        const("shape"),
        const("gelu_half"),
        const("neg_inf"),
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node(
            "BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b"], name="/bn/BatchNorm"
        ),
        helper.make_node("Mul", ["b", "gelu_half"], ["g"], name="/act/Mul"),
        helper.make_node("Max", ["g", "neg_inf"], ["m"], name="/clip/Max"),
        helper.make_node("Reshape", ["m", "shape"], ["r"], name="/flat/Reshape"),
        helper.make_node("MatMul", ["r", "w_mm"], ["mm"], name="/fc/MatMul"),
        helper.make_node("Add", ["mm", "b_mm"], ["y"], name="/fc/Add"),
        helper.make_node("If", ["flag"], ["z"], then_branch=then_graph, else_branch=else_graph, name="branch"),
    ]
    init_names = ("w_mm", "b_mm", "bn_scale", "bn_bias", "bn_mean", "bn_var")
    graph = helper.make_graph(
        nodes,
        "consts",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(arrays[n], n) for n in init_names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, arrays


def test_onnx_constant_nodes_are_read_and_graph_constants_are_not_trainable(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from reportgen.sources.onnx_file import OnnxSource

    model, arrays = _constants_model(onnx)
    path = tmp_path / "consts.onnx"
    onnx.save_model(model, str(path))
    src = OnnxSource(path)
    refs = {p.key: p for layer in src.layers() for p in layer.params}
    assert set(refs) == set(arrays)
    for key, ref in refs.items():
        np.testing.assert_array_equal(src.read(ref), arrays[key])
    # Learned: weights of Conv, MatMul (also inside the If branch), BatchNorm scale/bias, the bias added after MatMul.
    learned = {"conv.weight", "w_mm", "b_mm", "bn_scale", "bn_bias", "branch.weight"}
    assert {k for k, r in refs.items() if r.trainable} == learned
    roles = {k: r.role for k, r in refs.items()}
    assert roles["conv.weight"] == roles["w_mm"] == roles["branch.weight"] == "kernel"
    assert (roles["bn_scale"], roles["bn_bias"], roles["bn_mean"], roles["bn_var"]) == (
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    )
    assert roles["b_mm"] == "bias"
    assert "6 initializers, 5 Constant tensors" in src.info.description


def test_onnx_without_weights_is_a_source_error(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from reportgen.sources.onnx_file import OnnxSource

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    with pytest.raises(SourceError, match=r"relu\.onnx: no weights found: 1 nodes, no initializer and no Constant"):
        OnnxSource(path)


def test_onnx_quantized_weight_through_dequantize_is_trainable(tmp_path: Path) -> None:
    """int8 codes reach MatMul through DequantizeLinear: learned values; the scale and zero point are not."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from reportgen.sources.onnx_file import OnnxSource

    codes = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    inits = [
        numpy_helper.from_array(codes, "w_q"),
        numpy_helper.from_array(np.array(0.05, "f4"), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="/fc/Dequant"),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=inits,
    )
    path = tmp_path / "q.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    src = OnnxSource(path)
    refs = {p.key: p for layer in src.layers() for p in layer.params}
    assert (refs["w_q"].role, refs["w_q"].trainable) == ("kernel", True)
    assert not refs["w_scale"].trainable and not refs["w_zero"].trainable
    np.testing.assert_array_equal(src.read(refs["w_q"]), codes)


def test_checkpoint_without_wrapper_key_skips_training_state(tmp_path: Path) -> None:
    """Sub-networks at the top level are read with dotted names; optimizer state beside them is named, not read."""
    torch = pytest.importorskip("torch")
    from reportgen.sources.torch_file import TorchSource

    gen, disc = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(gen.parameters(), lr=0.1, momentum=0.9)
    gen(torch.ones(2, 3)).sum().backward()
    opt.step()
    path = tmp_path / "gan.pt"
    torch.save({"gen": gen.state_dict(), "disc": disc.state_dict(), "optimizer": opt.state_dict()}, path)
    src = TorchSource(path)
    assert [p.key for layer in src.layers() for p in layer.params] == [
        "gen.weight",
        "gen.bias",
        "disc.weight",
        "disc.bias",
    ]
    assert src.info.description.endswith("not read: state dict['optimizer'] (training state)")
