"""The Python API: in-memory PyTorch, Keras and array models, config dicts, display, save, inspect, compare."""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import reportgen
from reportgen.config import config_from_mapping
from reportgen.errors import ConfigError, NetworkError, SourceError
from reportgen.sources.memory import open_object

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "tensorflow", "keras", "huggingface_hub")


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


def test_import_stays_light() -> None:
    """import reportgen and the API module pull in no framework and no hub client."""
    code = f"import sys, reportgen, reportgen.api; reportgen.analyze; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_api_names_are_not_shadowed_by_modules() -> None:
    """Every API name stays the API's object once all of reportgen's own modules are imported."""
    import importlib
    import pkgutil

    from reportgen import api

    # __main__ runs the command line; _forkserver, imported after a build in this process set the build's
    # pid, takes this process for a fork server whose build died and exits 0, ending the test run silently.
    for info in pkgutil.walk_packages(reportgen.__path__, "reportgen."):
        if info.name not in ("reportgen.__main__", "reportgen._forkserver"):
            importlib.import_module(info.name)
    for name in reportgen.__all__:
        if name != "__version__":
            assert getattr(reportgen, name) is getattr(api, name), name


def test_extras_stay_optional() -> None:
    """The core install needs neither PyTorch nor huggingface_hub; each has its own extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert "torch" not in core and "huggingface" not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("torch") for d in extras["torch"])
    assert any(d.startswith("huggingface_hub") for d in extras["hf"])
    assert {"nbclient", "ipykernel"} <= {d.split(">")[0].split("=")[0] for d in extras["dev"]}


def test_missing_hf_extra_names_it(tmp_path: Path) -> None:
    """Without huggingface_hub an hf: path says which extra to install, exit code 4."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text("title: t\nformats: [json]\nmodels:\n  - {name: m, path: 'hf:org/name'}\n")
    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        f"from reportgen.cli import main; sys.exit(main(['build', {str(cfg)!r}, '-o', {str(tmp_path / 'out')!r}]))"
    )
    done = _run_python(code)
    assert done.returncode == 4, done.stderr
    assert "pip install 'reportgen[hf]'" in done.stderr
    assert f"{cfg}:4: models[0].path" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_keras_extra_names_it(tmp_path: Path) -> None:
    """Without Keras a keras: model says which extra to install, exit code 4, no traceback."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text("title: t\nformats: [json]\nmodels:\n  - {name: m, keras: VGG16, weights: null}\n")
    code = (
        "import sys; sys.modules['keras'] = None\n"
        f"from reportgen.cli import main; sys.exit(main(['build', {str(cfg)!r}, '-o', {str(tmp_path / 'out')!r}]))"
    )
    done = _run_python(code)
    assert done.returncode == 4, done.stderr
    assert "pip install 'reportgen[keras]'" in done.stderr and f"{cfg}:4: models[0].keras" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- PyTorch


torch = pytest.importorskip("torch")


def _net(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 48),
        torch.nn.BatchNorm1d(48),
        torch.nn.ReLU(),
        torch.nn.Linear(48, 32),
        torch.nn.LayerNorm(32),
        torch.nn.Linear(32, 10),
    )


def _train(net: Any, steps: int = 100) -> float:
    """Train on scikit-learn's digits; return the training accuracy."""
    from sklearn.datasets import load_digits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small trains faster on one thread than fighting for two

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    torch.set_num_threads(threads)
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def torch_pair() -> tuple[Any, dict[str, Any], float]:
    """A trained MLP and a copy of its state dict from before training."""
    net = _net()
    fresh = {k: v.detach().clone() for k, v in net.state_dict().items()}
    accuracy = _train(net)
    return net, fresh, accuracy


def test_module_types_and_default_inits() -> None:
    """An nn.Module keeps its real layer types; PyTorch's default initializers give the bounds."""
    torch.manual_seed(1)
    net = torch.nn.ModuleDict(
        {
            "emb": torch.nn.Embedding(100, 16),
            "conv": torch.nn.Conv2d(3, 8, 5),
            "lstm": torch.nn.LSTM(16, 24),
            "attn": torch.nn.MultiheadAttention(16, 4),
            "gn": torch.nn.GroupNorm(2, 8),
        }
    )
    source = open_object(net)
    layers = {layer.name: layer for layer in source.layers()}
    assert layers["conv"].class_name == "Conv2d" and layers["conv"].type_source == "config"
    conv_w, conv_b = layers["conv"].param("weight"), layers["conv"].param("bias")
    assert conv_w is not None and conv_b is not None
    from reportgen.initializers import distribution

    # kaiming_uniform_(a=sqrt(5)) on (8, 3, 5, 5): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)).
    fan_in = 3 * 5 * 5
    expected = math.sqrt(2.0 / 6.0) * math.sqrt(3.0 / fan_in)
    for ref in (conv_w, conv_b):
        dist = distribution(ref.init, ref.shape, ref.layout, conv_w.shape)
        assert dist is not None and dist.limit == pytest.approx(expected)
        values = source.read(ref)
        assert np.abs(values).max() <= expected
    emb = layers["emb"].param("weight")
    assert emb is not None and emb.role == "embedding"
    dist = distribution(emb.init, emb.shape, emb.layout)
    assert dist is not None and dist.family == "normal" and dist.std == 1.0
    lstm = layers["lstm"]
    assert lstm.param("weight_hh_l0").role == "recurrent_kernel"  # type: ignore[union-attr]
    for ref in lstm.params:
        dist = distribution(ref.init, ref.shape, ref.layout)
        assert dist is not None and dist.limit == pytest.approx(1 / math.sqrt(24))
    attn = layers["attn"].param("in_proj_weight")
    assert attn is not None
    dist = distribution(attn.init, attn.shape, attn.layout)
    assert dist is not None and dist.limit == pytest.approx(math.sqrt(6.0 / (16 + 48)))  # xavier on (48, 16)
    out_bias = layers["attn.out_proj"].param("bias")
    assert out_bias is not None and out_bias.init is not None and out_bias.init.kind == "zeros"
    # A bare module is one layer of its own type; tensors set on a container's root are layers each.
    [single] = open_object(torch.nn.Linear(30, 20)).layers()
    assert single.name == "Linear" and [p.init.kind for p in single.params] == ["pytorch_default"] * 2  # type: ignore[union-attr]
    gn = layers["gn"]
    assert [(p.role, p.init.kind if p.init else None) for p in gn.params] == [("gamma", "ones"), ("beta", "zeros")]


@pytest.mark.slow
def test_module_untrained_vs_trained(torch_pair: tuple[Any, dict[str, Any], float]) -> None:
    """A fresh module reads at initialisation, the trained one as moved; statistics match NumPy."""
    net, _, accuracy = torch_pair
    assert accuracy > 0.9
    report = reportgen.analyze({"fresh": _net(), "trained": net}, title="MLP")
    assert [m.name for m in report.models] == ["fresh", "trained"]
    fresh_verdicts = {v.layer: v.status for v in report.verdicts("fresh")}
    trained_verdicts = {v.layer: v.status for v in report.verdicts("trained")}
    assert fresh_verdicts == {"0": "at_init", "1": "at_init", "3": "at_init", "4": "at_init", "5": "at_init"}
    assert trained_verdicts == {"0": "moved", "1": "moved", "3": "moved", "4": "moved", "5": "moved"}
    assert report.verdicts("trained", status="at_init") == []
    kernel = net[0].weight.detach().numpy().astype(np.float64)
    a = report["trained"].analysis("0", "weight")
    assert a is not None
    assert a.stats.mean == pytest.approx(kernel.mean(), rel=1e-9)
    assert a.stats.std == pytest.approx(kernel.std(), rel=1e-9)
    assert a.stats.max == kernel.max()
    rows = [r for r in report.table("trained") if r.param == "running_var"]
    assert rows and rows[0].class_name == "BatchNorm1d" and rows[0].role == "moving_variance"
    assert report["trained"].source.format == "pytorch-module"


def test_state_dict_before_and_after(torch_pair: tuple[Any, dict[str, Any], float]) -> None:
    """A state dict: types inferred from names, PyTorch's defaults on the inferred Linear layers."""
    net, fresh, _ = torch_pair
    report = reportgen.analyze({"init": fresh, "trained": net.state_dict()})
    init, trained = report["init"], report["trained"]
    assert init.source.format == "pytorch-state-dict"
    linear = [layer.name for layer in init.layers if layer.class_name == "Linear"]
    assert linear == ["0", "3", "5"]
    assert all(init.verdict(name).status == "at_init" for name in linear)  # type: ignore[union-attr]
    assert all(trained.verdict(name).status == "moved" for name in linear)  # type: ignore[union-attr]
    # BatchNorm is recognised by its running statistics; these are buffers, never judged as trained.
    bn = next(layer for layer in init.layers if layer.name == "1")
    assert bn.class_name == "BatchNorm"
    assert {p.name: p.trainable for p in bn.params}["running_mean"] is False


def test_arrays_mapping_and_init_statement() -> None:
    """A plain mapping of arrays has no initializer unless one is stated; stated, it is checked."""
    torch.manual_seed(3)
    layer = torch.nn.Linear(200, 100)
    arrays = {"fc.weight": layer.weight.detach().numpy(), "fc.bias": layer.bias.detach().numpy()}
    unknown = reportgen.analyze(arrays, name="plain")
    assert [v.status for v in unknown.verdicts()] == ["unknown_init"]
    stated = reportgen.analyze(arrays, name="plain", init="pytorch_default")
    assert [v.status for v in stated.verdicts()] == ["at_init"]
    # Keras-style names get Keras's (in, out) layout, nested mappings are flattened.
    nested = reportgen.analyze({"dense": {"kernel": np.ones((3, 4), np.float32)}}, name="nested")
    assert nested["nested"].layers[0].params[0].layout == "keras"
    assert nested["nested"].layers[0].name == "dense"


def test_config_dict_with_memory_models(tmp_path: Path) -> None:
    """build() takes a config mapping; `path: memory:KEY` entries name the models passed in."""
    config = {
        "title": "From a dict",
        "formats": ["html", "json"],
        "models": [
            {"name": "net", "path": "memory:net", "layers": [{"type": "Linear"}], "params": ["weight"]},
        ],
    }
    report = reportgen.build(config, models={"net": _net()})
    assert report.config.path.name == "<dict>"
    selected = report["net"].selected
    assert [s.selected.layer.name for s in selected] == ["0", "3", "5"]
    assert [p.name for s in selected for p in s.selected.params] == ["weight"] * 3
    with pytest.raises(ConfigError, match=r"^<dict>: models\[0\]\.path: no in-memory model 'net'"):
        reportgen.build(config)
    with pytest.raises(ConfigError, match="'other', which no 'path: memory:KEY' names"):
        reportgen.build(config, models={"net": _net(), "other": _net()})
    with pytest.raises(ConfigError, match=r"^<dict>: models\[0\]: give exactly one of 'keras'"):
        reportgen.build({"title": "t", "models": [{"name": "x"}]})
    with pytest.raises(SourceError, match=r"models\[0\]\.path: cannot analyse a builtins.int"):
        reportgen.build(config, models={"net": 42})


def test_memory_path_in_a_yaml_config_is_a_config_error(tmp_path: Path) -> None:
    """The CLI has no in-memory models: a memory: path is a config error (exit 3), one line."""
    from reportgen.cli import main

    cfg = tmp_path / "r.yaml"
    cfg.write_text("title: t\nmodels:\n  - name: m\n    path: memory:m\n")
    assert main(["build", str(cfg), "-o", str(tmp_path / "out")]) == 3
    assert not (tmp_path / "out").exists()


def test_inline_display_is_safe_and_complete(torch_pair: tuple[Any, dict[str, Any], float]) -> None:
    """The summary has no script and escapes names; show() sandboxes the full, network-free report."""
    net, _, _ = torch_pair
    report = reportgen.analyze(net, name="<script>alert(1)</script>", title="T <b>")
    summary = report._repr_html_()
    assert "<script" not in summary.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in summary
    assert "T &lt;b&gt;" in summary
    assert report["<script>alert(1)</script>"].diagnosis.summary in html.unescape(summary)
    frame = report.show()._repr_html_()
    assert frame.startswith("<iframe") and 'sandbox="allow-scripts"' in frame
    assert "allow-same-origin" not in frame
    doc = html.unescape(frame.split('srcdoc="', 1)[1].rsplit('"', 1)[0])
    assert doc == report.html()
    csp = html.unescape(doc.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0])
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert "<script>alert(1)</script>" not in doc


@pytest.mark.slow
def test_save_writes_the_folder(tmp_path: Path, torch_pair: tuple[Any, dict[str, Any], float]) -> None:
    """save() writes the same files as the CLI, atomically, and refuses to overwrite without force."""
    from reportgen.schema import validate_stats

    net, fresh, _ = torch_pair
    report = reportgen.analyze({"init": fresh, "trained": net}, title="saved")
    result = report.save(tmp_path / "rep", formats=["html", "json"])
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["manifest.json", "report.html", "stats.json"]
    doc = json.loads((tmp_path / "rep" / "stats.json").read_text())
    validate_stats(doc)
    assert [m["source"]["format"] for m in doc["models"]] == ["pytorch-state-dict", "pytorch-module"]
    assert result.out_dir == tmp_path / "rep"
    from reportgen.errors import OutputError

    with pytest.raises(OutputError):
        report.save(tmp_path / "rep", formats=["json"])
    report.save(tmp_path / "rep", formats=["json"], force=True)


def test_inspect_file_and_object(tmp_path: Path) -> None:
    """inspect_weights() reads a file or an object; statistics agree with NumPy's."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {"enc.weight": rng.normal(size=(30, 20)).astype(np.float32), "enc.bias": np.zeros(30, np.float32)}
    save_file(arrays, str(tmp_path / "m.safetensors"))
    for target in (tmp_path / "m.safetensors", arrays):
        found = {(t.layer.name, t.ref.name): t.stats for t in reportgen.inspect_weights(target)}
        w = arrays["enc.weight"].astype(np.float64)
        assert found[("enc", "weight")].std == pytest.approx(w.std(), rel=1e-12)
        assert found[("enc", "bias")].zeros == 30
    assert reportgen.inspect_weights(arrays, pattern="dec*") == []


def test_compare_reports(tmp_path: Path, torch_pair: tuple[Any, dict[str, Any], float]) -> None:
    """compare() takes Report objects or folders and gives the DiffModel `reportgen diff` uses."""
    net, fresh, _ = torch_pair
    before = reportgen.analyze(fresh, name="mlp")
    after = reportgen.analyze(net.state_dict(), name="mlp")
    comparison = reportgen.compare(before, after)
    [model] = comparison.diff.models
    changed = {(t.layer, t.param): t for t in model.tensors}
    old_w, new_w = fresh["0.weight"].numpy().astype(np.float64), net[0].weight.detach().numpy().astype(np.float64)
    assert changed[("0", "weight")].std_ratio == pytest.approx(new_w.std() / old_w.std(), rel=1e-9)
    assert "model mlp:" in comparison.summary()
    before.save(tmp_path / "a", formats=["json"])
    from_folder = reportgen.compare(tmp_path / "a", after)
    assert from_folder.diff.old.path == str(tmp_path / "a")
    saved = from_folder.save(tmp_path / "d", formats=["json"])
    assert (saved / "diff.json").is_file()


def test_open_object_refuses_other_things() -> None:
    """Anything that is not a model is refused with one line naming its type."""
    with pytest.raises(SourceError, match=r"cannot analyse a builtins\.str"):
        open_object("model.safetensors")
    with pytest.raises(SourceError, match="'x': a str of dtype <U5, not numbers"):
        open_object({"x": "hello"})
    with pytest.raises(SourceError, match="has no parameters"):
        open_object(torch.nn.ReLU())


def test_dict_config_errors_have_no_line_numbers() -> None:
    """A config mapping has no lines: errors name the key path only."""
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"title": "t", "bins": 2, "models": [{"name": "a", "path": "x", "nmae": 1}]})
    assert sorted(err.value.messages) == [
        "<dict>: bins: Input should be greater than or equal to 5",
        "<dict>: models[0].nmae: unknown key 'nmae' (did you mean 'name'?)",
    ]


# ---------------------------------------------------------------------------- Keras cache


def test_keras_cache_names_every_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """weights: imagenet: every missing file is named at once, with its fetch command, before any build."""
    from reportgen.config import load_config
    from reportgen.pipeline import BuildOptions, build_report_model
    from reportgen.sources import keras_app

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras_app, "network_reachable", lambda url, timeout=5.0: False)

    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was built before the cache was checked")

    monkeypatch.setattr(keras_app, "build_application", no_build)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        "title: t\nmodels:\n"
        "  - {name: a, keras: VGG16, weights: null}\n"
        "  - {name: b, keras: VGG16, weights: imagenet}\n"
        "  - {name: c, keras: ResNet50, weights: imagenet}\n"
        "  - {name: d, keras: MobileNetV3Small, weights: imagenet}\n"
    )
    cache = tmp_path / "keras" / "models"
    with pytest.raises(NetworkError) as err:
        build_report_model(load_config(cfg), BuildOptions())
    [text] = str(err.value).splitlines()
    assert text.startswith(f"{cfg}:4: models[1].weights: model 'b' (keras.applications.VGG16) needs ImageNet weights ")
    assert f"none of them is in the Keras cache {cache} and there is no network" in text
    base = "https://storage.googleapis.com/tensorflow/keras-applications"
    fetch = " && ".join(
        f"curl -fL --create-dirs -o {cache / name} {base}/{folder}/{name}"
        for folder, name in (
            ("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
            ("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
            ("mobilenet_v3", "weights_mobilenet_v3_small_224_1.0_float.h5"),
        )
    )
    assert f"On a connected machine run `{fetch}`, then copy the files into {cache} here" in text
    assert f"{cfg}:5: models[2].weights: model 'c' (keras.applications.ResNet50)" in text
    assert f"{cfg}:6: models[3].weights: model 'd' (keras.applications.MobileNetV3Small)" in text
    # A file already cached is not asked for again.
    cache.mkdir(parents=True)
    (cache / "resnet50_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"x")
    with pytest.raises(NetworkError) as err:
        build_report_model(load_config(cfg), BuildOptions())
    assert "vgg16_weights" in str(err.value) and "resnet50_weights" not in str(err.value)
    # With a network, Keras downloads them itself.
    monkeypatch.setattr(keras_app, "network_reachable", lambda url, timeout=5.0: True)
    with pytest.raises(AssertionError, match="a model was built"):
        build_report_model(load_config(cfg), BuildOptions())


def test_every_keras_application_has_its_cache_file() -> None:
    """Every application the config accepts has the file name and URL of its ImageNet weights."""
    from reportgen.config import KERAS_APPLICATIONS
    from reportgen.sources.keras_app import imagenet_file

    for app in KERAS_APPLICATIONS:
        known = imagenet_file(app)
        assert known is not None, app
        name, url = known
        assert name.endswith(".h5") and url.startswith("https://storage.googleapis.com/")


@pytest.mark.slow
def test_cache_files_are_the_ones_keras_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table matches what keras.applications itself requests (file name, URL), for small models."""
    pytest.importorskip("keras")
    import keras
    from keras.src.utils import file_utils

    from reportgen.sources.keras_app import imagenet_file

    asked: dict[str, tuple[str, str]] = {}

    class Asked(Exception):
        pass

    def capture(fname: str, origin: str, *args: Any, **kwargs: Any) -> Any:
        raise Asked(fname, origin)

    monkeypatch.setattr(file_utils, "get_file", capture)
    for app in ("VGG16", "MobileNet", "MobileNetV3Small", "EfficientNetB0"):
        with pytest.raises(Asked) as err:
            getattr(keras.applications, app)(weights="imagenet")
        asked[app] = err.value.args
        keras.backend.clear_session()
    assert {app: imagenet_file(app) for app in asked} == asked


# ---------------------------------------------------------------------------- notebook


@pytest.mark.slow
def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example notebook builds reports from an in-memory Keras model and a PyTorch state dict."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("keras")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(ROOT / "tests" / "notebooks" / "in_memory_models.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    summaries = [h for h in shown if 'class="reportgen-summary"' in h]
    frames = [h for h in shown if h.startswith("<iframe") and 'sandbox="allow-scripts"' in h]
    assert len(summaries) == 2 and len(frames) == 1
    assert "Keras digits MLP" in summaries[0] and "PyTorch digits MLP" in summaries[1]
    # The notebook's last cell prints the verdicts it read; the untrained models read at init.
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    verdicts = json.loads(text.strip().splitlines()[-1])
    assert set(verdicts["keras untrained"]) == {"at_init"}
    assert set(verdicts["keras trained"]) == {"moved"}
    assert set(verdicts["torch init"]) == {"at_init"}
    assert set(verdicts["torch trained"]) == {"moved"}
