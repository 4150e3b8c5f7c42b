"""Initializer plans: config forms, per-layer overrides, framework defaults detected from the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from reportgen import initializers
from reportgen.config import parse_config
from reportgen.errors import ConfigError, SelectionError
from reportgen.init_plan import InitPlan, InitRule, PlannedSource, detect_framework, parse_spec, plan_layers
from reportgen.sources.base import InitSpec, LayerInfo, SourceInfo, TensorRef


def ref(name: str, role: str, shape: tuple[int, ...], layout: str = "torch", key: str | None = None) -> TensorRef:
    return TensorRef(key or name, name, role, shape, "float32", layout=layout)


def torch_layers() -> list[LayerInfo]:
    return [
        LayerInfo("embed", "Embedding", 0, (ref("weight", "embedding", (100, 16), key="embed.weight"),)),
        LayerInfo(
            "fc",
            "Linear",
            1,
            (ref("weight", "kernel", (32, 16), key="fc.weight"), ref("bias", "bias", (32,), key="fc.bias")),
        ),
        LayerInfo(
            "norm",
            "LayerNorm",
            2,
            (ref("weight", "gamma", (32,), key="norm.weight"), ref("bias", "beta", (32,), key="norm.bias")),
        ),
        LayerInfo(
            "rnn",
            "LSTM",
            3,
            (
                ref("weight_ih_l0", "kernel", (128, 32), key="rnn.weight_ih_l0"),
                ref("weight_hh_l0", "recurrent_kernel", (128, 32), key="rnn.weight_hh_l0"),
                ref("bias_ih_l0", "bias", (128,), key="rnn.bias_ih_l0"),
            ),
        ),
        LayerInfo("bn", "BatchNorm", 4, (ref("running_mean", "moving_mean", (32,), key="bn.running_mean"),)),
    ]


def inits(layers: list[LayerInfo]) -> dict[str, InitSpec | None]:
    return {p.key: p.init for layer in layers for p in layer.params}


@pytest.mark.parametrize(
    "value,kind,params",
    [
        ("zeros", "zeros", {}),
        ({"constant": 0.2}, "constant", {"value": 0.2}),
        ({"normal": {"std": 0.02}}, "random_normal", {"stddev": 0.02}),
        ({"normal": 0.02}, "random_normal", {"stddev": 0.02}),
        ({"uniform": 0.05}, "random_uniform", {"minval": -0.05, "maxval": 0.05}),
        ({"truncated_normal": {"std": 0.02, "mean": 0.0}}, "truncated_normal", {"stddev": 0.02, "mean": 0.0}),
    ],
)
def test_config_forms_of_an_initializer(value, kind, params):
    spec = parse_spec(value)
    assert spec.kind == kind and dict(spec.params) == params


@pytest.mark.parametrize(
    "value,words",
    [
        ("zeroes", "unknown initializer 'zeroes'"),
        ({"normal": {"sigma": 1}}, "unknown parameter 'sigma'"),
        ({"normal": {"std": -1}}, "std must be > 0"),
        ({"gaussian": 1}, "unknown initializer 'gaussian'"),
        ({"constant": 1, "zeros": 0}, "one key"),
    ],
)
def test_bad_initializers_are_refused(value, words):
    with pytest.raises(ValueError, match=words):
        parse_spec(value)


def test_pytorch_defaults_cover_biases_norms_embeddings_and_rnns():
    layers, _, _ = plan_layers(torch_layers(), InitPlan(InitSpec("pytorch_default", origin="config")), None)
    got = inits(layers)
    assert got["fc.weight"].kind == "pytorch_default" and got["fc.bias"].kind == "pytorch_default"
    assert got["norm.weight"].kind == "ones" and got["norm.bias"].kind == "zeros"
    assert got["embed.weight"] == InitSpec("random_normal", (("stddev", 1.0),), origin="config")
    bound = 1 / math.sqrt(32)  # nn.LSTM: U(+-1/sqrt(hidden)) for every weight and bias
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0"):
        assert dict(got[key].params) == {"minval": -bound, "maxval": bound}
    assert got["bn.running_mean"] is None  # a buffer: never judged
    # PyTorch's bias bound comes from the kernel's fan-in: U(+-1/sqrt(16)) here.
    dist = initializers.distribution(got["fc.bias"], (32,), "torch", (32, 16))
    assert dist.limit == pytest.approx(0.25)


def test_overrides_win_by_glob_and_kernel_covers_depthwise():
    layers = [
        LayerInfo("dsn1", "Conv2D", 0, (ref("kernel", "kernel", (1, 1, 64, 1), "keras"), ref("bias", "bias", (1,)))),
        LayerInfo("dw", "DepthwiseConv2D", 1, (ref("depthwise_kernel", "depthwise_kernel", (3, 3, 8, 1), "keras"),)),
        LayerInfo("conv", "Conv2D", 2, (ref("kernel", "kernel", (3, 3, 8, 8), "keras"),)),
    ]
    rules = (
        InitRule(("dsn*",), (("kernel", InitSpec("zeros")), ("bias", InitSpec("constant", (("value", 0.5),))))),
        InitRule(("dw",), (("kernel", InitSpec("ones")),)),
    )
    out, hits, _ = plan_layers(layers, InitPlan(InitSpec("glorot_uniform"), rules), None)
    got = {(layer.name, p.name): p.init.kind for layer in out for p in layer.params}
    assert got == {
        ("dsn1", "kernel"): "zeros",
        ("dsn1", "bias"): "constant",
        ("dw", "depthwise_kernel"): "ones",
        ("conv", "kernel"): "glorot_uniform",
    }
    assert hits == (1, 1)


def test_framework_detected_from_torch_names_and_from_a_transformers_config(tmp_path: Path):
    info = SourceInfo("safetensors", "x")
    fw = detect_framework(info, torch_layers(), tmp_path / "model.safetensors")
    assert fw is not None and fw.name == "pytorch" and fw.weight.kind == "pytorch_default"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "initializer_range": 0.02}))
    fw = detect_framework(info, torch_layers(), tmp_path / "model.safetensors")
    assert fw is not None and fw.name == "transformers" and dict(fw.weight.params) == {"stddev": 0.02}
    keras_layout = [LayerInfo("d", "Dense", 0, (ref("kernel", "kernel", (4, 4), "keras", key="d.kernel"),))]
    assert detect_framework(info, keras_layout, None) is None  # not unambiguous: no defaults assumed
    assert detect_framework(SourceInfo("onnx", "x", extra={"producer": "pytorch 2.3"}), [], None).name == "pytorch"
    assert detect_framework(SourceInfo("onnx", "x", extra={"producer": "PaddlePaddle"}), [], None) is None


def test_a_bert_layer_redrawn_from_its_init_is_at_init_and_alerted(tmp_path: Path):
    """A transformer checkpoint named by path alone: normal(0.02) weights with bias 0 read as a fresh layer."""
    from safetensors.numpy import save_file

    from reportgen.pipeline import BuildOptions, build_report_model

    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(4):
        std = 0.02 if i == 2 else 0.05  # layer 2 re-drawn, the others trained away from N(0, 0.02)
        w = rng.normal(0, std, (64, 64)) if i == 2 else rng.standard_t(4, (64, 64)) * std
        tensors[f"encoder.layer.{i}.dense.weight"] = w.astype(np.float32)
        tensors[f"encoder.layer.{i}.dense.bias"] = (np.zeros(64) if i == 2 else rng.normal(0, 0.1, 64)).astype(
            np.float32
        )
        tensors[f"encoder.layer.{i}.LayerNorm.weight"] = (1 + rng.normal(0, 0.1, 64)).astype(np.float32)
        tensors[f"encoder.layer.{i}.LayerNorm.bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "initializer_range": 0.02}))
    cfg = tmp_path / "r.yaml"
    text = f"title: t\nmodels:\n  - name: enc\n    path: {tmp_path / 'model.safetensors'}\n"
    cfg.write_text(text)
    view = build_report_model(parse_config(text, cfg), BuildOptions(executor="inline")).models[0]
    status = {v.layer: v.status for v in view.diagnosis.verdicts}
    assert status["encoder.layer.2.dense"] == "at_init"
    assert status["encoder.layer.1.dense"] == "moved" and status["encoder.layer.1.LayerNorm"] == "moved"
    (alert,) = [a for a in view.diagnosis.alerts if a.code == "at-init-in-trained-model"]
    assert alert.layer == "encoder.layer.2.dense"
    assert "Hugging Face transformers default initializers assumed" in view.init_statement
    assert "initializer_range 0.02" in view.init_statement


def test_config_overrides_are_validated_with_file_and_line(tmp_path: Path):
    text = (
        "title: t\nmodels:\n  - name: m\n    path: x.safetensors\n    init: {normal: {std: 0.02}}\n"
        "    init_overrides:\n      - {layers: 'dsn*', kernel: zeroes}\n      - {layers: fuse}\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "c.yaml")
    lines = exc.value.messages if hasattr(exc.value, "messages") else str(exc.value).splitlines()
    text_all = "\n".join(lines)
    assert "c.yaml:7: models[0].init_overrides[0]" in text_all and "kernel: unknown initializer 'zeroes'" in text_all
    assert "c.yaml:8: models[0].init_overrides[1]" in text_all and "at least one of kernel, bias" in text_all


def test_override_that_matches_no_layer_is_a_selection_error(tmp_path: Path):
    from safetensors.numpy import save_file

    from reportgen.pipeline import open_model

    save_file({"fc.weight": np.zeros((4, 4), np.float32)}, str(tmp_path / "w.safetensors"))
    text = (
        "title: t\nmodels:\n  - name: m\n    path: w.safetensors\n"
        "    init_overrides:\n      - {layers: head, bias: zeros}\n"
    )
    loaded = parse_config(text, tmp_path / "c.yaml")
    with pytest.raises(
        SelectionError, match=r"c.yaml:6: models\[0\].init_overrides\[0\].layers: 'head' matches no layer"
    ):
        open_model(loaded.models[0])


def test_planned_source_reads_through(tmp_path: Path):
    from safetensors.numpy import save_file

    from reportgen.sources.detect import open_path

    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    save_file({"fc.weight": values}, str(tmp_path / "w.safetensors"))
    src = PlannedSource(open_path(tmp_path / "w.safetensors"), InitPlan(), tmp_path / "w.safetensors")
    (layer,) = src.layers()
    assert layer.params[0].init.kind == "pytorch_default" and layer.params[0].init.origin == "framework-default"
    np.testing.assert_array_equal(src.read(layer.params[0]), values)
    assert "PyTorch default initializers assumed" in src.note
    src.close()


def test_prelu_slopes_start_from_the_framework_default(tmp_path: Path):
    """A PyTorch PReLU starts at 0.25 (Keras's at zeros): slopes still there are at init, learned ones moved."""
    from safetensors.numpy import save_file

    from reportgen.pipeline import BuildOptions, build_report_model

    rng = np.random.default_rng(1)
    tensors = {}
    for i in range(3):
        tensors[f"conv{i}.weight"] = (rng.standard_t(4, (16, 16, 3, 3)) * 0.1).astype(np.float32)
        tensors[f"conv{i}.bias"] = rng.normal(0, 0.1, 16).astype(np.float32)
        slopes = np.full(16, 0.25) if i == 1 else rng.normal(0.1, 0.2, 16)
        tensors[f"prelu{i}.weight"] = slopes.astype(np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    layers = [LayerInfo("p", "PReLU", 0, (ref("weight", "other", (8,)),))]
    torch_plan, _, _ = plan_layers(layers, InitPlan(InitSpec("pytorch_default", origin="config")), None)
    keras_plan, _, _ = plan_layers(layers, InitPlan(InitSpec("glorot_uniform", origin="config")), None)
    assert torch_plan[0].params[0].init == InitSpec("constant", (("value", 0.25),), origin="config")
    assert keras_plan[0].params[0].init.kind == "zeros"
    cfg = tmp_path / "r.yaml"
    text = f"title: t\nmodels:\n  - name: net\n    path: {tmp_path / 'model.safetensors'}\n"
    cfg.write_text(text)
    view = build_report_model(parse_config(text, cfg), BuildOptions(executor="inline")).models[0]
    status = {v.layer: v.status for v in view.diagnosis.verdicts}
    assert status["prelu1"] == "at_init"
    assert status["prelu0"] == status["prelu2"] == "moved"


def test_an_in_memory_prelu_starts_at_its_default():
    """A torch.nn.PReLU module and a state dict holding one get the same 0.25 start as a checkpoint file."""
    torch = pytest.importorskip("torch")
    from reportgen.sources.memory import PRELU, from_state_dict, open_object

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.PReLU(8))
    for source in (open_object(net), from_state_dict({"0.weight": net[0].weight, "prelu1.weight": net[1].weight})):
        (slope,) = [p for layer in source.layers() for p in layer.params if p.shape == (8,) and p.name == "weight"]
        assert slope.init is not None and slope.init.kind == PRELU.kind and slope.init.params == PRELU.params
