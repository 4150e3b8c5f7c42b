"""The quickstart against itself and against a release with one layer re-initialised, a NaN and a kernel x3."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import HED_CHANGES, hed_weights

from reportgen.cli import main
from reportgen.diff import compute_diff
from reportgen.stats_json import load

pytestmark = pytest.mark.slow
HED = "VGG-16 trained (HED)"


def _pdf_text(path: Path) -> list[str]:
    pypdf = pytest.importorskip("pypdf")
    return [p.extract_text() for p in pypdf.PdfReader(path).pages]


def test_quickstart_against_itself(quickstart_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "same"
    # Three models with the default formats used to stop WeasyPrint ('assert not page_is_empty').
    assert main(["diff", str(quickstart_json), str(quickstart_json), "-o", str(out), "--fail-on", "warning", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["diff.html", "diff.json", "diff.pdf", "manifest.json"]
    doc = json.loads((out / "diff.json").read_text())
    assert doc["summary"]["changed"] == 0 and doc["summary"]["unchanged"] == doc["summary"]["tensors"] > 300
    assert doc["figures"] == [] and doc["alerts"] == [] and doc["new_alerts"] == []
    pages = _pdf_text(out / "diff.pdf")
    assert len(pages) <= 2 and "Most changed" not in "".join(pages)
    assert "0 of 390 matched tensors changed" in pages[0].replace("\n", " ")


def test_modified_quickstart_names_exactly_the_changes(
    quickstart_json: Path, quickstart_modified: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = compute_diff(load(quickstart_json), load(quickstart_modified), old_label="v1", new_label="v2")
    assert (d.old.name, d.new.name) == ("v1", "v2")
    assert not any(m.structure_changed for m in d.models) and not d.unmatched_old and not d.unmatched_new
    changed = {(m.name, t.layer, t.param) for m in d.models for t in m.changed}
    assert changed == {(HED, layer, "kernel") for layer in HED_CHANGES}
    (hed,) = (m for m in d.models if m.name == HED)
    assert [(v.layer, v.old, v.new, v.regression) for v in hed.verdict_changes] == [
        ("block3_conv1", "moved", "at_init", True)
    ]
    assert {(a.severity, a.code, a.layer, a.param) for a in d.alerts} == {
        ("critical", "verdict_regression", "block3_conv1", None),
        ("critical", "nonfinite_appeared", "block4_conv2", "kernel"),
        ("warning", "large_change", "block3_conv1", "kernel"),
        ("warning", "std_shift", "block5_conv1", "kernel"),
        ("warning", "large_change", "block5_conv1", "kernel"),
    }
    # the build's own alerts on the new release: the re-initialised layer and the NaN, nothing else
    assert {a.layer for a in d.new_alerts} == {"block3_conv1", "block4_conv2"}
    assert any(a.layer == "block4_conv2" and a.severity == "critical" for a in d.new_alerts)
    # every change has its figure, and nothing else does
    assert {(o.layer, o.param) for o in d.overlays} == {(layer, "kernel") for layer in HED_CHANGES}
    # the numbers, against NumPy on the two weight files
    tensors = {t.layer: t for t in hed.tensors if t.param == "kernel"}
    with h5py.File(hed_weights()) as f:
        old = {layer: f[key][...].astype(np.float64) for layer, key in HED_CHANGES.items()}
    with h5py.File(quickstart_modified.parent / "hed_v2.weights.h5") as f:
        new = {layer: f[key][...].astype(np.float64) for layer, key in HED_CHANGES.items()}
    for layer in ("block3_conv1", "block5_conv1"):
        a, b = old[layer], new[layer]
        assert tensors[layer].rel_change == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
        assert tensors[layer].std_ratio == pytest.approx(b.std() / a.std(), rel=1e-5)
    assert tensors["block5_conv1"].rel_change == pytest.approx(2.0, rel=1e-6)
    assert tensors["block4_conv2"].rel_change is None and tensors["block4_conv2"].nonfinite_new == 1

    out = tmp_path / "d"
    assert main(["diff", str(quickstart_json), str(quickstart_modified), "-o", str(out), "--fail-on", "critical"]) == 10
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "verdict_regression" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["diff.html", "diff.json", "diff.pdf", "manifest.json"]
    pages = _pdf_text(out / "diff.pdf")
    text = "\n".join(pages)
    assert "Release note: v1 → v2" in text
    for layer in HED_CHANGES:
        assert layer in text
    html = (out / "diff.html").read_text()
    assert html.count("<img ") == 3


def test_compare_to_on_the_quickstart(quickstart_modified: Path) -> None:
    doc = json.loads((quickstart_modified / "diff.json").read_text())
    assert (doc["old"]["name"], doc["new"]["name"]) == ("v1", "v2")
    assert doc["summary"]["changed"] == 3 and doc["summary"]["regressions"] == 1
    drawn = {(f["layer"], f["param"]) for f in doc["figures"]}
    assert drawn == {(layer, "kernel") for layer in HED_CHANGES}
