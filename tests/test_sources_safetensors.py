"""SafetensorsSource and the naming rules: layers, roles, types, order, quantization, bounded reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen.errors import SourceError
from reportgen.sources.naming import FlatTensor, group_layers, natural_key, param_role, split_name
from reportgen.sources.safetensors_file import SafetensorsSource


def _bert_like(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rng.standard_normal((30, 8)).astype("f4"),
        "embeddings.LayerNorm.weight": np.ones(8, "f4"),
        "embeddings.LayerNorm.bias": np.zeros(8, "f4"),
        "pooler.dense.weight": rng.standard_normal((8, 8)).astype("f4"),
        "pooler.dense.bias": np.zeros(8, "f4"),
    }
    for i in range(12):
        arrays[f"encoder.layer.{i}.attention.self.query.weight"] = rng.standard_normal((8, 8)).astype("f4")
        arrays[f"encoder.layer.{i}.attention.self.query.bias"] = np.full(8, i, "f4")
    save_file(arrays, str(path), metadata={"format": "pt"})
    return arrays


def test_split_name_and_natural_key() -> None:
    assert split_name("encoder.layer.0.attention.self.query.weight") == (
        "encoder.layer.0.attention.self.query",
        "weight",
    )
    assert split_name("cls_token") == ("cls_token", "cls_token")
    names = ["layer.10", "layer.9", "layer.1"]
    assert sorted(names, key=natural_key) == ["layer.1", "layer.9", "layer.10"]


def test_hf_names_group_into_layers_in_natural_order(tmp_path: Path) -> None:
    arrays = _bert_like(tmp_path / "model.safetensors")
    src = SafetensorsSource(tmp_path / "model.safetensors")
    layers = src.layers()
    names = [layer.name for layer in layers]
    queries = [n for n in names if n.startswith("encoder.")]
    assert queries == [f"encoder.layer.{i}.attention.self.query" for i in range(12)]
    assert names.index("encoder.layer.9.attention.self.query") < names.index("encoder.layer.10.attention.self.query")
    assert [layer.index for layer in layers] == list(range(len(layers)))
    by_name = {layer.name: layer for layer in layers}

    q = by_name["encoder.layer.0.attention.self.query"]
    assert (q.class_name, q.type_source) == ("Linear", "inferred")
    assert [(p.name, p.role, p.layout) for p in q.params] == [
        ("weight", "kernel", "torch"),
        ("bias", "bias", "torch"),
    ]
    ln = by_name["embeddings.LayerNorm"]
    assert ln.class_name == "LayerNorm"
    assert [(p.name, p.role) for p in ln.params] == [("weight", "gamma"), ("bias", "beta")]
    emb = by_name["embeddings.word_embeddings"]
    assert (emb.class_name, emb.params[0].role) == ("Embedding", "embedding")

    ref = by_name["encoder.layer.10.attention.self.query"].param("bias")
    assert ref is not None
    np.testing.assert_array_equal(src.read(ref), arrays["encoder.layer.10.attention.self.query.bias"])
    assert src.info.format == "safetensors"
    assert src.info.extra == {"format": "pt"}


def test_batchnorm_roles_and_conv_types() -> None:
    flat = [
        FlatTensor("features.0.weight", (8, 3, 3, 3), "float32"),
        FlatTensor("features.0.bias", (8,), "float32"),
        FlatTensor("features.1.weight", (8,), "float32"),
        FlatTensor("features.1.bias", (8,), "float32"),
        FlatTensor("features.1.running_mean", (8,), "float32"),
        FlatTensor("features.1.running_var", (8,), "float32"),
        FlatTensor("features.1.num_batches_tracked", (), "int64"),
        FlatTensor("seq.conv.weight", (4, 2, 5), "float32"),
        FlatTensor("vol.weight", (4, 2, 3, 3, 3), "float32"),
        FlatTensor("transformer.h.0.ln_1.weight", (8,), "float32"),
        FlatTensor("rnn.weight_ih_l0", (20, 3), "float32"),
        FlatTensor("rnn.weight_hh_l0", (20, 5), "float32"),
        FlatTensor("prelu.weight", (1,), "float32"),
    ]
    layers = {layer.name: layer for layer in group_layers(flat)}
    bn = layers["features.1"]
    assert bn.class_name == "BatchNorm"
    assert [(p.name, p.role) for p in bn.params] == [
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
        ("num_batches_tracked", "other"),
    ]
    assert layers["features.0"].class_name == "Conv2d"
    assert layers["seq.conv"].class_name == "Conv1d"
    assert layers["vol"].class_name == "Conv3d"
    assert layers["transformer.h.0.ln_1"].class_name == "LayerNorm"
    assert layers["transformer.h.0.ln_1"].params[0].role == "gamma"
    assert layers["rnn"].class_name == "LSTM"
    assert {p.name: p.role for p in layers["rnn"].params} == {
        "weight_ih_l0": "kernel",
        "weight_hh_l0": "recurrent_kernel",
    }
    assert layers["prelu"].params[0].role == "other"


def test_embedding_needs_two_dims() -> None:
    assert param_role("embeddings.word_embeddings", "weight", (10, 4), ["weight"]) == "embedding"
    # A patch embedding's 4-D projection is a convolution kernel, not a lookup table.
    assert param_role("embeddings.patch_embeddings.projection", "weight", (8, 3, 4, 4), ["weight"]) == "kernel"


def test_appearance_order_keeps_file_order() -> None:
    flat = [FlatTensor("conv1.weight", (4, 3, 3, 3), "float32"), FlatTensor("bn1.weight", (4,), "float32")]
    assert [layer.name for layer in group_layers(flat, order="appearance")] == ["conv1", "bn1"]
    assert [layer.name for layer in group_layers(flat, order="natural")] == ["bn1", "conv1"]


def test_scalar_scale_beside_int8_weight_goes_into_quant(tmp_path: Path) -> None:
    path = tmp_path / "q.safetensors"
    save_file(
        {
            "fc.weight": np.arange(-6, 6, dtype=np.int8).reshape(3, 4),
            "fc.weight_scale": np.array(0.25, np.float32),
            "fc.zero_point": np.array(3, np.int8),
            "fc.bias": np.zeros(3, np.float32),
            "per_channel.weight": np.ones((2, 2), np.int8),
            "per_channel.weight_scale": np.ones(2, np.float32),
        },
        str(path),
    )
    src = SafetensorsSource(path)
    layers = {layer.name: layer for layer in src.layers()}
    fc = layers["fc"]
    assert [p.name for p in fc.params] == ["weight", "bias"]
    weight = fc.param("weight")
    assert weight is not None and dict(weight.quant) == {"scale": 0.25, "zero_point": 3.0}
    # A per-channel scale is a tensor of its own, not a scalar to fold in; the codes beside it are learned.
    assert [(p.name, p.trainable) for p in layers["per_channel"].params] == [("weight", True), ("weight_scale", False)]


def test_keras_origin_names_get_keras_layout(tmp_path: Path) -> None:
    path = tmp_path / "k.safetensors"
    save_file({"dense.kernel": np.ones((4, 2), "f4"), "dense.bias": np.zeros(2, "f4")}, str(path))
    layer = SafetensorsSource(path).layers()[0]
    assert layer.class_name == "Dense"
    assert [(p.role, p.layout) for p in layer.params] == [("kernel", "keras"), ("bias", "keras")]


def test_missing_and_empty_inputs_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nothing\.safetensors: no such file"):
        SafetensorsSource(tmp_path / "nothing.safetensors")
    with pytest.raises(SourceError, match=r"holds no \.safetensors file"):
        SafetensorsSource(tmp_path)


def test_chunks_are_fresh_arrays(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    values = np.arange(10, dtype=np.float32)
    save_file({"a.weight": values.reshape(2, 5)}, str(path))
    src = SafetensorsSource(path)
    ref = src.layers()[0].params[0]
    # Consumers may keep every chunk (np.concatenate over a generator), so no buffer may be reused.
    chunks = list(src.iter_chunks(ref, max_elems=3))
    np.testing.assert_array_equal(np.concatenate(chunks), values)


_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    import numpy as np
    from reportgen.sources.safetensors_file import SafetensorsSource
    src = SafetensorsSource(Path(sys.argv[1]))
    ref = src.layers()[0].params[0]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    top = max(float(np.max(c)) for c in src.iter_chunks(ref, max_elems=1 << 20))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(top, (after - before) // 1024)
    """
)


@pytest.mark.slow
def test_iter_chunks_keeps_memory_near_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    n = 24 << 20  # 96 MiB of float32
    values = np.arange(n, dtype=np.float32)
    save_file({"big.weight": values}, str(path))
    del values
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    top, grown_mib = float(out[0]), int(out[1])
    assert top == float(np.float32(n - 1))
    # One 4 MiB chunk at a time; a memory map of the whole tensor would add ~96 MiB here.
    assert grown_mib < 32, f"peak RSS grew by {grown_mib} MiB while streaming a 96 MiB tensor"


def test_buffers_and_index_tensors_are_not_trainable(tmp_path: Path) -> None:
    """A transformer checkpoint's position ids, a causal mask and an int8 weight with its scale, as files hold them."""
    rng = np.random.default_rng(4)
    arrays = {
        "embeddings.position_ids": np.arange(16, dtype=np.int64)[None],
        "embeddings.word_embeddings.weight": rng.standard_normal((30, 8)).astype("f4"),
        "embeddings.LayerNorm.weight": np.ones(8, "f4"),
        "embeddings.LayerNorm.bias": np.zeros(8, "f4"),
        "h.0.ln_1.weight": np.ones(8, "f4"),
        "h.0.ln_1.bias": np.zeros(8, "f4"),
        "h.0.attn.bias": np.tril(np.ones((1, 1, 4, 4), "f4")),
        "h.0.attn.masked_bias": np.array(-1e4, "f4"),
        "h.0.attn.c_attn.weight": rng.standard_normal((8, 24)).astype("f4"),
        "h.0.attn.c_attn.bias": np.zeros(24, "f4"),
        "q.weight": rng.integers(-127, 127, (4, 8)).astype(np.int8),
        "q.weight_scale": np.array([0.01], "f4"),
        "bn.weight": np.ones(4, "f4"),
        "bn.bias": np.zeros(4, "f4"),
        "bn.running_mean": np.zeros(4, "f4"),
        "bn.running_var": np.ones(4, "f4"),
        "bn.num_batches_tracked": np.array(5, np.int64),
        "vocab_mask": np.ones(30, bool),
    }
    path = tmp_path / "m.safetensors"
    save_file(arrays, str(path))
    refs = {p.key: p for layer in SafetensorsSource(path).layers() for p in layer.params}
    frozen = {
        "embeddings.position_ids",
        "h.0.attn.bias",
        "h.0.attn.masked_bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "vocab_mask",
    }
    assert {k for k, r in refs.items() if not r.trainable} == frozen
    for norm in ("embeddings.LayerNorm", "h.0.ln_1", "bn"):
        assert (refs[f"{norm}.weight"].role, refs[f"{norm}.bias"].role) == ("gamma", "beta")
    assert refs["q.weight"].quant == (("scale", pytest.approx(0.01)),)
