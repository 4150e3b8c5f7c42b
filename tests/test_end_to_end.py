"""Build whole reports from small models made here, then check every output as a reader would."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps


def test_outputs_written(built: Path) -> None:
    assert sorted(p.name for p in built.iterdir()) == [
        "manifest.json",
        "report.html",
        "report.pdf",
        "stats.json",
    ]
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".report.")]


def test_stats_match_independent_numpy(built: Path, digits_models) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((built / "stats.json").read_text())
    models = {m["name"]: m for m in doc["models"]}
    for model_name, arrays in (
        ("trained", digits_models.trained_arrays),
        ("untrained", digits_models.untrained_arrays),
    ):
        layers = {layer["name"]: layer for layer in models[model_name]["layers"]}
        for layer_name, values in arrays.items():
            names = [p["name"] for p in layers[layer_name]["params"]]
            assert len(names) == len(values)
            for p, arr in zip(layers[layer_name]["params"], values, strict=True):
                x = np.asarray(arr, dtype=np.float64).ravel()
                s = p["stats"]
                assert s["count"] == x.size and tuple(p["shape"]) == arr.shape
                for key, want in (
                    ("mean", x.mean()),
                    ("std", x.std()),
                    ("var", x.var()),
                    ("min", x.min()),
                    ("max", x.max()),
                    ("median", np.median(x)),
                    ("p01", np.percentile(x, 1)),
                    ("p99", np.percentile(x, 99)),
                    ("mean_abs", np.abs(x).mean()),
                    ("l2", np.sqrt((x * x).sum())),
                ):
                    assert s[key] == pytest.approx(want, rel=1e-9, abs=1e-12), (layer_name, p["name"], key)
                assert s["zeros"] == int((x == 0).sum())
                if x.std() > 0:
                    assert s["skewness"] == pytest.approx(sps.skew(x), rel=1e-7, abs=1e-9)
                    assert s["kurtosis"] == pytest.approx(sps.kurtosis(x), rel=1e-7, abs=1e-9)
                else:
                    assert s["skewness"] is None and s["kurtosis"] is None


def test_untrained_at_init_trained_moved(built: Path) -> None:
    doc = json.loads((built / "stats.json").read_text())
    models = {m["name"]: m for m in doc["models"]}
    for name, want in (("untrained", "at_init"), ("trained", "moved")):
        verdicts = {
            layer["name"]: layer["verdict"]["status"]
            for layer in models[name]["layers"]
            if layer["verdict"] and layer["class_name"] in ("Conv2D", "Dense")
        }
        assert verdicts and set(verdicts.values()) == {want}, (name, verdicts)
        assert models[name]["looks_trained"] is (want == "moved")


def test_glorot_limits_hold_for_untrained(built: Path) -> None:
    doc = json.loads((built / "stats.json").read_text())
    untrained = next(m for m in doc["models"] if m["name"] == "untrained")
    checked = 0
    for layer in untrained["layers"]:
        for p in layer["params"]:
            if p["role"] == "kernel":
                fan_in = int(np.prod(p["shape"][:-1]))
                fan_out = int(np.prod(p["shape"][:-2]) * p["shape"][-1]) if len(p["shape"]) > 2 else p["shape"][-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                assert p["init"]["limit"] == pytest.approx(limit, rel=1e-12)
                assert p["stats"]["max_abs"] <= float(np.float32(limit))  # Keras draws in float32
                checked += 1
    assert checked == 4


def test_html_is_self_contained_and_escaped(built: Path) -> None:
    html = (built / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # no URL that would make a reader's browser fetch anything
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("#", "data:")), attr
    assert 'http-equiv="Content-Security-Policy"' in html
    assert not re.search(r"url\((?!data:)", html)
    # every in-page link resolves to an id
    ids = set(re.findall(r'id="([^"]+)"', html))
    for target in re.findall(r'href="#([^"]+)"', html):
        assert target in ids, target


def test_pdf_has_sections_and_bookmarks(built: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(built / "report.pdf")
    assert len(reader.pages) >= 3
    text = "\n".join(page.extract_text() for page in reader.pages)
    for heading in ("The answer", "most important findings", "Alerts", "Findings", "Selected layers"):
        assert heading in text
    # The brief PDF leaves the bulk to the HTML and stats.json, and never tells a reader to click.
    for bulk in ("Appendix", "Every verdict", "Architecture", "Click a column head"):
        assert bulk not in text

    def titles(outline: list) -> list[str]:  # type: ignore[type-arg]
        out: list[str] = []
        for item in outline:
            out += titles(item) if isinstance(item, list) else [item.title]
        return out

    marks = titles(reader.outline)
    for want in ("The answer", "Alerts", "Findings", "untrained", "trained", "Provenance"):
        assert want in marks, marks
    assert re.search(r"\b2 / \d+\b", text)


def test_manifest_hashes_outputs(built: Path) -> None:
    import hashlib

    doc = json.loads((built / "manifest.json").read_text())
    for name in ("report.html", "report.pdf", "stats.json"):
        assert doc["outputs"][name]["sha256"] == hashlib.sha256((built / name).read_bytes()).hexdigest()
    assert len(doc["inputs"]) == 3


def test_compare_to_writes_a_diff(built: Path, digits_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reportgen.cli import main

    cfg = tmp_path / "next.yaml"
    cfg.write_text(
        f"title: next release\noutput: {tmp_path / 'out'}\nformats: [html, json]\ncompare_to: {built}\n"
        f"models:\n  - name: trained\n    path: {digits_models.trained_keras}\n"
    )
    assert main(["build", str(cfg), "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["diff.html", "diff.json", "manifest.json", "report.html", "stats.json"]
    diff = json.loads((tmp_path / "out" / "diff.json").read_text())
    from reportgen.diff import DIFF_SCHEMA_VERSION

    assert diff["schema_version"] == DIFF_SCHEMA_VERSION
    assert 'href="diff.html"' in (tmp_path / "out" / "report.html").read_text()


def test_bad_compare_to_keeps_the_report(digits_models, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from reportgen.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"title: t\noutput: {tmp_path / 'out'}\nformats: [json]\ncompare_to: {tmp_path / 'nope'}\n"
        f"models:\n  - name: a\n    path: {digits_models.trained_keras}\n"
    )
    assert main(["build", str(cfg), "--quiet"]) == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"reportgen: error: {cfg}:4: compare_to: "), err
    assert err[0].endswith("nope: no such file or folder")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "stats.json"]


def test_optimizer_state_is_not_a_layer(built: Path, digits_models) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((built / "stats.json").read_text())
    from_h5 = next(m for m in doc["models"] if m["name"].startswith("trained <script>"))
    names = [layer["name"] for layer in from_h5["layers"] if layer["params"]]
    assert sorted(names) == sorted(digits_models.trained_arrays)  # Adam's moments stay out
    assert from_h5["param_count"] == sum(a.size for arrs in digits_models.trained_arrays.values() for a in arrs)
