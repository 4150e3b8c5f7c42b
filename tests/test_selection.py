"""Layer selection by index (Python semantics), name, glob, type and role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reportgen.config import LayerSelector
from reportgen.errors import SelectionError
from reportgen.selection import select
from reportgen.sources.base import LayerInfo, TensorRef


def _layer(i: int, name: str, kind: str) -> LayerInfo:
    if kind in ("InputLayer", "MaxPooling2D", "Flatten"):
        return LayerInfo(name, kind, i)
    shape = (3, 3, 8, 8) if kind == "Conv2D" else (8, 8)
    params = (
        TensorRef(f"{name}/kernel", "kernel", "kernel", shape, "float32"),
        TensorRef(f"{name}/bias", "bias", "bias", (8,), "float32"),
    )
    return LayerInfo(name, kind, i, params)


LAYERS = [
    _layer(i, n, k)
    for i, (n, k) in enumerate(
        [
            ("input", "InputLayer"),
            ("block1_conv1", "Conv2D"),
            ("block1_conv2", "Conv2D"),
            ("block1_pool", "MaxPooling2D"),
            ("block2_conv1", "Conv2D"),
            ("flatten", "Flatten"),
            ("fc1", "Dense"),
            ("predictions", "Dense"),
        ]
    )
]


def names(selected: list) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(s.layer.name, s.label, tuple(p.name for p in s.params)) for s in selected]


def test_python_index_semantics() -> None:
    sel = [LayerSelector(index=1), LayerSelector(index=-1), LayerSelector(index=-4)]
    assert [s.layer.name for s in select(LAYERS, sel, ["kernel", "bias"], "m")] == [
        "block1_conv1",
        "predictions",
        "block2_conv1",
    ]


def test_roles_and_labels() -> None:
    sel = [LayerSelector(role="first Conv2D"), LayerSelector(role="last Dense", params=["kernel"])]
    assert names(select(LAYERS, sel, ["kernel", "bias"], "m")) == [
        ("block1_conv1", "first convolutional", ("kernel", "bias")),
        ("predictions", "last fully connected", ("kernel",)),
    ]


def test_glob_type_and_name() -> None:
    assert [s.layer.name for s in select(LAYERS, [LayerSelector(glob="block1_*")], ["all"], "m")] == [
        "block1_conv1",
        "block1_conv2",
    ]
    assert [s.layer.name for s in select(LAYERS, [LayerSelector(type="Dense")], ["all"], "m")] == [
        "fc1",
        "predictions",
    ]
    picked = select(LAYERS, [LayerSelector(name="fc1", label="first fully connected")], ["bias"], "m")
    assert names(picked) == [("fc1", "first fully connected", ("bias",))]


def test_a_layer_picked_twice_is_listed_once() -> None:
    sel = [LayerSelector(index=1), LayerSelector(role="first Conv2D")]
    assert [s.layer.name for s in select(LAYERS, sel, ["kernel"], "m")] == ["block1_conv1"]


def test_default_selection_is_first_and_last_of_each_type() -> None:
    assert [s.label for s in select(LAYERS, None, ["kernel"], "m")] == [
        "first convolutional",
        "last convolutional",
        "first fully connected",
        "last fully connected",
    ]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            LayerSelector(index=40),
            "cfg: layers[0]: index 40 is out of range: model 'm' has 8 layers (valid indexes -8..7)",
        ),
        (
            LayerSelector(index=-9),
            "cfg: layers[0]: index -9 is out of range: model 'm' has 8 layers (valid indexes -8..7)",
        ),
        (
            LayerSelector(index=3),
            "cfg: layers[0]: index 3 is layer 'block1_pool' (MaxPooling2D), which has no weights",
        ),
        (LayerSelector(name="fc2"), "cfg: layers[0]: model 'm' has no layer named 'fc2' (did you mean fc1?)"),
        (
            LayerSelector(glob="block9_*"),
            "cfg: layers[0]: glob 'block9_*' selects no layer with weights in model 'm' "
            "(names look like: block1_conv1, block1_conv2, block2_conv1, fc1)",
        ),
        (
            LayerSelector(role="first Conv3D"),
            "cfg: layers[0]: model 'm' has no Conv3D layer with weights (types present: Conv2D, Dense)",
        ),
        (
            LayerSelector(index=1, params=["gamma"]),
            "cfg: layers[0]: layer 'block1_conv1' has none of the parameters ['gamma'] (it has: kernel, bias)",
        ),
    ],
)
def test_selection_errors(selector: LayerSelector, message: str) -> None:
    with pytest.raises(SelectionError) as info:
        select(LAYERS, [selector], ["kernel"], "m", where="cfg: ")
    assert str(info.value) == message


def _ref(name: str, role: str, shape: tuple[int, ...], trainable: bool = True) -> TensorRef:
    return TensorRef(f"x/{name}", name, role, shape, "float32", trainable=trainable)


def test_default_selection_never_fails_on_layers_without_kernel_or_bias() -> None:
    """Embedding first, bias-free SeparableConv2D and a buffer-only layer last: the default shows what each has."""
    layers = [
        LayerInfo("embed", "Embedding", 0, (_ref("embeddings", "embedding", (30, 8)),)),
        LayerInfo(
            "sep1",
            "SeparableConv2D",
            1,
            (
                _ref("depthwise_kernel", "depthwise_kernel", (3, 3, 8, 1)),
                _ref("pointwise_kernel", "pointwise_kernel", (1, 1, 8, 8)),
            ),
        ),
        LayerInfo(
            "sep2",
            "SeparableConv2D",
            2,
            (
                _ref("depthwise_kernel", "depthwise_kernel", (3, 3, 8, 1)),
                _ref("pointwise_kernel", "pointwise_kernel", (1, 1, 8, 8)),
            ),
        ),
        LayerInfo("fc", "Dense", 3, (_ref("kernel", "kernel", (8, 4)), _ref("bias", "bias", (4,)))),
        LayerInfo("stats", "Unknown", 4, (_ref("running_mean", "moving_mean", (4,), trainable=False),)),
    ]
    got = names(select(layers, None, ["kernel", "bias"], "m"))
    assert got == [
        ("embed", "first embedding", ("embeddings",)),
        ("sep1", "first separable convolutional", ("depthwise_kernel", "pointwise_kernel")),
        ("sep2", "last separable convolutional", ("depthwise_kernel", "pointwise_kernel")),
        ("fc", "first fully connected", ("kernel", "bias")),
    ]
    # Only the buffer layer is left: the fallback picks it by name and shows its one tensor.
    only = names(select(layers[4:], None, ["kernel", "bias"], "m"))
    assert only == [("stats", "stats", ("running_mean",))]


def test_explicit_selector_still_says_what_is_missing() -> None:
    layers = [LayerInfo("embed", "Embedding", 0, (_ref("embeddings", "embedding", (30, 8)),))]
    with pytest.raises(SelectionError, match=r"layer 'embed' has none of the parameters \['kernel'\]"):
        select(layers, [LayerSelector(name="embed")], ["kernel"], "m")


def test_default_first_layer_of_a_type_skips_a_fixed_basis() -> None:
    """An STFT basis stored as a conv kernel (a buffer) is not the 'first convolutional' layer."""
    layers = [
        LayerInfo("stft", "Conv", 0, (_ref("forward_basis_buffer", "other", (16, 1, 8), trainable=False),)),
        LayerInfo("enc0", "Conv", 1, (_ref("weight", "kernel", (8, 16, 3)), _ref("bias", "bias", (8,)))),
        LayerInfo("enc1", "Conv", 2, (_ref("weight", "kernel", (8, 8, 3)), _ref("bias", "bias", (8,)))),
    ]
    got = names(select(layers, None, ["weight", "bias"], "m"))
    assert got == [
        ("enc0", "first convolutional", ("weight", "bias")),
        ("enc1", "last convolutional", ("weight", "bias")),
    ]
    # Asked for by name, the basis is still there to look at.
    assert names(select(layers, [LayerSelector(name="stft")], ["all"], "m")) == [
        ("stft", "stft", ("forward_basis_buffer",))
    ]


@pytest.mark.slow
def test_build_with_only_a_path_reads_embedding_first_and_buffer_last(tmp_path: Path) -> None:
    """A checkpoint whose first layer is an Embedding and whose last tensors are buffers builds with exit 0."""
    torch = pytest.importorskip("torch")
    from reportgen.cli import main

    torch.manual_seed(0)
    net = torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(20, 8),
            "proj": torch.nn.Linear(8, 8),
            "out": torch.nn.Linear(8, 4),
            "norm": torch.nn.BatchNorm1d(4),
        }
    )
    state = {"model_state": {**net.state_dict(), "pos.position_ids": torch.arange(8)[None]}, "step": 10}
    torch.save(state, tmp_path / "ckpt.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"title: t\noutput: {tmp_path / 'r'}\nformats: [json]\nmodels:\n  - name: m\n    path: {tmp_path / 'ckpt.pt'}\n"
    )
    assert main(["build", str(cfg), "--quiet"]) == 0
    doc = json.loads((tmp_path / "r" / "stats.json").read_text())
    (model,) = doc["models"]
    picked = [(s["layer"], s["params"]) for s in model["selected"]]
    assert picked == [("embed", ["weight"]), ("proj", ["weight", "bias"]), ("out", ["weight", "bias"])]
    assert "not read: checkpoint['step']" in model["source"]["description"]
