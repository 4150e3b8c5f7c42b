"""Config schema: every error at once, with file, line and key path, exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.config import load_config, parse_config
from reportgen.errors import ConfigError

GOOD = """\
title: t
output: out
models:
  - name: a
    keras: VGG16
    weights: null
    layers:
      - index: 1
      - role: last Dense
        params: [kernel]
  - name: b
    path: weights.h5
    init: glorot_uniform
"""


def errors(text: str, name: str = "c.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path(name))
    return info.value.messages


def test_good_config_parses() -> None:
    cfg = parse_config(GOOD, Path("configs/x.yaml")).config
    assert [m.name for m in cfg.models] == ["a", "b"]
    assert cfg.models[0].weights is None and cfg.models[0].keras == "VGG16"
    assert cfg.models[0].layers is not None and cfg.models[0].layers[1].params == ["kernel"]
    assert cfg.formats == ["html", "pdf", "json"]


def test_unknown_key_with_suggestion_and_line() -> None:
    text = GOOD.replace("      - index: 1\n", "      - nmae: fc1\n")
    assert errors(text) == ["c.yaml:8: models[0].layers[0].nmae: unknown key 'nmae' (did you mean 'name'?)"]


def test_unknown_application_offers_nearest() -> None:
    text = GOOD.replace("keras: VGG16", "keras: VGG17")
    assert errors(text) == ["c.yaml:5: models[0].keras: unknown Keras application 'VGG17' (did you mean VGG19, VGG16?)"]


def test_every_error_reported_at_once_in_line_order() -> None:
    text = GOOD.replace("output: out", "outptu: out").replace("keras: VGG16", "keras: VGG17")
    text = text.replace("init: glorot_uniform", "init: glorot_unform")
    msgs = errors(text)
    assert len(msgs) == 3
    assert msgs[0].startswith("c.yaml:2: outptu: unknown key 'outptu' (did you mean 'output'?)")
    assert msgs[1].startswith("c.yaml:5: models[0].keras:")
    assert msgs[2].startswith(
        "c.yaml:13: models[1].init: unknown initializer 'glorot_unform' (did you mean glorot_uniform?)"
    )


def test_selector_needs_exactly_one_way() -> None:
    text = GOOD.replace("      - index: 1\n", "      - index: 1\n        glob: 'block*'\n")
    assert errors(text) == [
        "c.yaml:8: models[0].layers[0]: give exactly one of index, name, glob, type, role (got index, glob)"
    ]


def test_keras_model_requires_weights_key() -> None:
    text = GOOD.replace("    weights: null\n", "")
    assert errors(text) == [
        "c.yaml:4: models[0]: 'weights' is required with 'keras': null (random init), imagenet, or a file path"
    ]


def test_source_must_be_keras_or_path() -> None:
    text = GOOD.replace("    path: weights.h5\n", "")
    assert errors(text) == [
        "c.yaml:11: models[1]: give exactly one of 'keras' (an application name) or 'path' (a weights file)"
    ]


def test_yaml_syntax_error_names_line() -> None:
    msgs = errors("title: t\nmodels: [\n  - name: a\n")
    assert len(msgs) == 1 and msgs[0].startswith("c.yaml:3: YAML syntax error:")


def test_anchors_and_aliases_refused() -> None:
    text = "title: &t x\noutput: *t\nmodels: []\n"
    assert errors(text) == ["c.yaml:1: YAML syntax error: anchors are not allowed"]


def test_missing_required_keys() -> None:
    assert errors("output: x\n") == [
        "c.yaml:1: title: missing required key 'title'",
        "c.yaml:1: models: missing required key 'models'",
    ]


def test_bad_format_value() -> None:
    msgs = errors(GOOD.replace("output: out", "output: out\nformats: [html, docx]"))
    assert len(msgs) == 1 and msgs[0].startswith("c.yaml:3: formats[1]: Input should be 'html', 'pdf' or 'json'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such config file"


def test_not_a_mapping() -> None:
    assert errors("- a\n- b\n") == ["c.yaml:1: the config must be a mapping of keys (title, output, models, ...)"]


def test_duplicate_model_names() -> None:
    text = GOOD.replace("name: b", "name: a")
    assert errors(text) == ["c.yaml:1: (top level): model names must be unique; repeated: a"]


def test_relative_paths_resolve_next_to_config(tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "c.yaml"
    cfg.parent.mkdir()
    cfg.write_text(GOOD)
    loaded = load_config(cfg)
    assert loaded.resolve("weights.h5") == tmp_path / "sub" / "weights.h5"
    assert loaded.where("models", 1, "path") == f"{cfg}:12: models[1].path"


def test_model_entries_carry_what_validation_resolved(tmp_path: Path) -> None:
    from reportgen.init_plan import parse_spec

    text = GOOD.replace(
        "    init: glorot_uniform\n",
        "    init: glorot_uniform\n    init_overrides:\n      - {layers: head, bias: zeros}\n"
        "  - name: c\n    path: ~/w.safetensors\n  - name: d\n    path: memory:net\n"
        "  - name: e\n    path: hf:org/name\n  - name: f\n    keras: VGG16\n    weights: v.h5\n",
    )
    cfg = tmp_path / "sub" / "c.yaml"
    loaded = parse_config(text, cfg)
    a, b, c, d, e, f = loaded.models
    assert (a.weights, a.path, a.where_source, a.where_weights) == (
        None,
        None,
        f"{cfg}:5: models[0].keras",
        f"{cfg}:6: models[0].weights",
    )
    assert (b.name, b.path, b.where, b.where_source) == (
        "b",
        cfg.parent / "weights.h5",
        f"{cfg}:11: models[1]",
        f"{cfg}:12: models[1].path",
    )
    assert b.init_plan.default == parse_spec("glorot_uniform")
    assert [r.patterns for r in b.init_plan.rules] == [("head",)]
    assert b.where_overrides == (f"{cfg}:15: models[1].init_overrides[0].layers",)
    assert c.path == Path("~/w.safetensors").expanduser()
    assert (d.path, d.memory_key) == (None, "net")
    assert (e.path, e.hf) == (None, "hf:org/name")  # fetched when the build opens it, never at validation
    assert f.weights == cfg.parent / "v.h5"


def test_build_uses_the_resolved_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After validation the pipeline, the workers' recipe and the error messages use the entries as they are."""
    import numpy as np
    from safetensors.numpy import save_file

    from reportgen.config import LoadedConfig
    from reportgen.pipeline import BuildOptions, build_report_model

    (tmp_path / "w").mkdir()
    save_file({"fc.weight": np.ones((4, 4), np.float32)}, str(tmp_path / "w" / "m.safetensors"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("title: t\nmodels:\n  - name: m\n    path: w/m.safetensors\n    init: pytorch_default\n")
    loaded = load_config(cfg)

    def no_second_resolution(self: LoadedConfig, value: str) -> Path:
        raise AssertionError(f"{value!r} resolved again after validation")

    monkeypatch.setattr(LoadedConfig, "resolve", no_second_resolution)
    monkeypatch.setattr("reportgen.config.ModelConfig.init_plan", no_second_resolution)
    report = build_report_model(loaded, BuildOptions(executor="inline"))
    assert [f.path for f in report.models[0].files] == [str(tmp_path / "w" / "m.safetensors")]
    assert report.models[0].init_statement and "pytorch_default" in report.models[0].init_statement


@pytest.mark.slow  # over 1.5 s
def test_missing_packages_of_several_models_are_named_at_once(tmp_path: Path) -> None:
    text = (
        "title: t\nmodels:\n"
        "  - {name: a, path: 'pkg:no_such_pkg_a/w.h5'}\n  - {name: b, path: 'pkg:no_such_pkg_b/w.h5'}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path / "c.yaml")
    assert info.value.messages == [
        f"{tmp_path / 'c.yaml'}: package 'no_such_pkg_a' is not installed (from 'pkg:no_such_pkg_a/w.h5')",
        f"{tmp_path / 'c.yaml'}: package 'no_such_pkg_b' is not installed (from 'pkg:no_such_pkg_b/w.h5')",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a folder, not a config file"),
        (lambda p: __import__("os").mkfifo(p), "not a regular file (a FIFO, socket or device); refused"),
    ],
)
def test_config_paths_are_refused_as_config_errors(tmp_path: Path, make: object, message: str) -> None:
    """The config file goes through the sources' path checks, and fails with the config's exit code."""
    path = tmp_path / "c.yaml"
    make(path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {message}" and info.value.exit_code == 3
    with pytest.raises(ConfigError, match="invalid file name"):
        load_config(str(tmp_path / "a\0b.yaml"))


@pytest.mark.slow
def test_package_path_resolves_without_import(tmp_path: Path) -> None:
    loaded = parse_config(GOOD, tmp_path / "c.yaml")
    path = loaded.resolve("pkg:json/decoder.py")
    assert path.name == "decoder.py" and path.exists()
    with pytest.raises(ConfigError, match="package 'no_such_pkg_xyz' is not installed"):
        loaded.resolve("pkg:no_such_pkg_xyz/a.h5")


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parent.parent / "configs"
    for path in sorted(root.glob("*.yaml")):
        load_config(path)
