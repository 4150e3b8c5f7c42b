"""stats.json against its JSON Schema (generated from its types), and reading earlier schema versions."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")

from reportgen.cli import main  # noqa: E402
from reportgen.diff import compute_diff  # noqa: E402
from reportgen.schema import STATS_SCHEMA, stats_schema, validate_stats  # noqa: E402
from reportgen.stats_json import CURRENT_VERSION, load, schema_text, upgrade_v09  # noqa: E402

V09 = Path(__file__).parent / "data" / "stats-v0.9.json"


def _errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(stats_schema())
    return sorted("/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(doc))


def test_schema_is_valid_draft_2020_12() -> None:
    schema = stats_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"]["const"] == CURRENT_VERSION


def test_checked_in_schema_is_generated_from_the_types() -> None:
    current = STATS_SCHEMA.read_text(encoding="utf-8")
    if current != schema_text():
        pytest.fail(
            f"{STATS_SCHEMA.relative_to(Path.cwd()) if STATS_SCHEMA.is_relative_to(Path.cwd()) else STATS_SCHEMA} "
            "is not generated from the types in reportgen/stats_json.py: run `make schema` and commit it"
        )


def test_built_stats_json_validates(built: Path) -> None:
    doc = json.loads((built / "stats.json").read_text())
    assert _errors(doc) == []
    # the schema is strict enough to catch drift: a renamed, a missing and a mistyped field
    bad = copy.deepcopy(doc)
    layer = next(x for x in bad["models"][0]["layers"] if x["params"])
    layer["params"][0]["stats"]["stdev"] = layer["params"][0]["stats"].pop("std")
    del bad["models"][0]["layers"][0]["verdict"]
    bad["models"][0]["param_count"] = "many"
    errors = _errors(bad)
    assert any("'std' is a required property" in e for e in errors), errors
    assert any("'stdev' was unexpected" in e for e in errors), errors
    assert any("'verdict' is a required property" in e for e in errors), errors
    assert any(e.startswith("models/0/param_count:") for e in errors), errors


def _pruned_build(tmp_path: Path, formats: str) -> tuple[Any, int, Path]:
    """Build a report of a magnitude-pruned kernel; return it, its NumPy near-zero count and the folder."""
    import numpy as np
    from safetensors.numpy import save_file

    from reportgen.thresholds import NEAR_ZERO_REL

    rng = np.random.default_rng(7)
    kernel = rng.normal(0, 0.1, (64, 32)).astype(np.float32)
    kernel[np.abs(kernel) < 0.08] *= 1e-4  # pruned to tiny values, not exact zeros
    save_file({"fc.weight": kernel, "fc.bias": np.zeros(64, np.float32)}, str(tmp_path / "m.safetensors"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"title: t\noutput: {tmp_path / 'r'}\nformats: [{formats}]\n"
        f"models:\n  - name: m\n    path: {tmp_path / 'm.safetensors'}\n"
    )
    assert main(["build", str(cfg), "--quiet"]) == 0
    expect = int((np.abs(kernel.astype(np.float64)) <= NEAR_ZERO_REL * np.abs(kernel).max()).sum())
    assert expect > kernel.size // 2
    return kernel, expect, tmp_path / "r"


@pytest.mark.slow
def test_near_zero_reaches_stats_json_and_both_html_tables(tmp_path: Path) -> None:
    kernel, expect, folder = _pruned_build(tmp_path, "html, json")
    doc = json.loads((folder / "stats.json").read_text())
    assert _errors(doc) == []
    stats = {(x["name"], p["name"]): p["stats"] for x in doc["models"][0]["layers"] for p in x["params"]}
    assert (stats["fc", "weight"]["near_zero"], stats["fc", "weight"]["near_zero_frac"]) == (
        expect,
        expect / kernel.size,
    )
    assert (stats["fc", "bias"]["near_zero"], stats["fc", "bias"]["near_zero_frac"]) == (64, 1.0)
    assert load(folder / "stats.json").doc.models[0].layers[0].params[0].stats.near_zero in (expect, 64)
    html = (folder / "report.html").read_text()
    share = f"{100 * expect / kernel.size:.1f}%"
    assert '<th class="n">near zero</th>' in html and f'<td class="n">{share}</td>' in html
    assert f'<tr><td>near zero</td><td class="n">{share}</td>' in html


def test_verdict_status_is_an_enum(built: Path) -> None:
    doc = json.loads((built / "stats.json").read_text())
    layer = next(x for x in doc["models"][0]["layers"] if x["verdict"])
    layer["verdict"]["status"] = "trained-ish"
    with pytest.raises(jsonschema.ValidationError, match="trained-ish"):
        validate_stats(doc)


def test_v09_is_upgraded_on_load() -> None:
    raw = json.loads(V09.read_text())
    assert raw["schema_version"] == "0.9"
    errors = _errors(raw)
    # The documented 0.9 -> 1.0 differences, and nothing else:
    assert any("schema_version" in e for e in errors)
    assert any("'p01' is a required property" in e for e in errors)
    assert any("'verdict' is a required property" in e for e in errors)
    assert _errors(upgrade_v09(copy.deepcopy(raw))) == []
    loaded = load(V09)
    assert (loaded.file, loaded.read_version, loaded.doc.schema_version) == (V09, "0.9", "1.0")
    layer = loaded.doc.models[0].layers[0]
    assert layer.params[0].stats is not None
    assert layer.params[0].stats.p01 is None and layer.params[0].stats.p99 is None
    assert layer.params[0].stats.near_zero is None  # written before the near-zero count: no default guessed
    assert layer.verdict is None


def test_diff_v09_against_current(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One model per side, so the archived model pairs with the current one despite its name.
    current = json.loads((built / "stats.json").read_text())
    current["models"] = [m for m in current["models"] if m["name"] == "trained"]
    (tmp_path / "stats.json").write_text(json.dumps(current))
    assert main(["diff", str(V09), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model digits-0.9 → trained" in out
    assert "removed layers: fc_old" in out
    assert "old weights not compared: /archive/v0.9/digits.keras is missing" in out
    d = compute_diff(load(V09), load(tmp_path), old_label="v0.9", new_label="now")
    (m,) = d.models
    assert d.old.schema_version == "0.9" and d.new.schema_version == "1.0"
    assert [(t.layer, t.param) for t in m.tensors] == [
        ("conv1", "kernel"),
        ("conv1", "bias"),
        ("fc1", "kernel"),
        ("fc1", "bias"),
    ]
    assert m.verdict_changes == ()  # 0.9 had no verdicts: nothing to compare, nothing invented
    assert {(o.layer, o.param) for o in d.overlays} == {("conv1", "kernel"), ("fc1", "kernel")}


def test_written_document_reads_back_as_the_same_typed_objects(tmp_path: Path) -> None:
    """The writer and the reader share one set of types: a report's document survives the round trip."""
    import numpy as np

    import reportgen
    from reportgen.render.json_report import render_json
    from reportgen.stats_json import StatsJson, of_report, stats_document

    rng = np.random.default_rng(3)
    arrays = {
        "fc.weight": rng.uniform(-0.1, 0.1, (32, 16)).astype(np.float32),
        "fc.bias": np.zeros(32, np.float32),
        "odd.weight": np.array([[np.nan, np.inf], [-np.inf, np.nan]], np.float32),  # no finite value: no moments
    }
    report = reportgen.analyze(arrays, name="m", init="pytorch_default")
    text = render_json(report.model)
    written = stats_document(report.model)
    assert StatsJson.model_validate_json(text) == written
    assert of_report(report.model).doc == written
    assert _errors(json.loads(text)) == []
    (tmp_path / "stats.json").write_text(text)
    loaded = load(tmp_path)
    assert loaded.doc == written and loaded.read_version == CURRENT_VERSION
    odd = next(layer for layer in loaded.doc.models[0].layers if layer.name == "odd")
    assert odd.params[0].stats is not None and odd.params[0].stats.nonfinite == 4
    assert odd.params[0].stats.mean is None  # NaN in the report model, null in the file, None when read
    assert '"mean": null' in text and ": NaN" not in text and "Infinity" not in text
