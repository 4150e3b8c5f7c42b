"""Compare two reports: an untrained digits CNN against its trained twin, and hand-made documents."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen import diff as rdiff
from reportgen.cli import main
from reportgen.diff import compute_diff
from reportgen.diff_weights import weight_change
from reportgen.releases import diff_summary
from reportgen.render.diff_report import render_diff
from reportgen.stats_json import LoadedStats, load, parse

DATA = Path(__file__).parent / "data"

ONE_MODEL = """\
title: {title}
output: {out}
formats: [json]
models:
  - name: digits
    path: {path}
"""


@pytest.fixture(scope="module")
def reports(digits_models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """Build an 'old' report of the untrained CNN and a 'new' one of the trained CNN."""
    folder = tmp_path_factory.mktemp("diff")
    out = []
    for name, path in (("old", digits_models.untrained_keras), ("new", digits_models.trained_keras)):
        cfg = folder / f"{name}.yaml"
        cfg.write_text(ONE_MODEL.format(title=f"Release {name}", out=folder / name, path=path))
        assert main(["build", str(cfg), "--quiet"]) == 0
        out.append(folder / name)
    return out[0], out[1]


def _raw(path: Path) -> dict[str, Any]:
    """Return a report's stats.json as plain JSON, to be changed and parsed again."""
    file = path / "stats.json" if path.is_dir() else path
    doc: dict[str, Any] = json.loads(file.read_text())
    return doc


def _typed(raw: dict[str, Any], where: str = "doc.json") -> LoadedStats:
    return parse(copy.deepcopy(raw), where, Path(where))


def _arrays(doc: LoadedStats, arrays: dict[str, list[np.ndarray]], layer: str, param: str) -> np.ndarray:
    """Return the Keras array of a tensor, found by the param's position in its layer."""
    entry = next(x for x in doc.doc.models[0].layers if x.name == layer)
    names = [p.name for p in entry.params]
    return np.asarray(arrays[layer][names.index(param)], dtype=np.float64).ravel()


def test_untrained_to_trained_matches_numpy(reports, digits_models) -> None:  # type: ignore[no-untyped-def]
    old, new = (load(p) for p in reports)
    d = compute_diff(old, new, old_label="old", new_label="new")
    (m,) = d.models
    # Same architecture: nothing added or removed (optimizer slots are training state, not layers).
    assert m.added_layers == () and m.removed_layers == () and m.reshaped_tensors == ()
    assert m.weights_compared == len(m.tensors) == 12
    for t in m.tensors:
        a = _arrays(old, digits_models.untrained_arrays, t.layer, t.param)
        b = _arrays(new, digits_models.trained_arrays, t.layer, t.param)
        assert t.abs_change == pytest.approx(np.linalg.norm(b - a), rel=1e-9, abs=1e-12)
        if np.any(a):
            assert t.rel_change == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
            assert t.cosine == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), rel=1e-9)
        else:  # zero-initialised biases and BN shifts: relative change and cosine undefined
            assert t.rel_change is None and t.cosine is None
        if t.std_old:
            assert t.std_ratio == pytest.approx(b.std() / a.std(), rel=1e-6)
        assert t.mean_delta == pytest.approx(b.mean() - a.mean(), abs=1e-9)
        assert t.max_abs_delta == pytest.approx(np.abs(b).max() - np.abs(a).max(), abs=1e-9)
    # ranked by relative change, biggest first; only tensors that changed
    scores = [t.rel_change or 0.0 for t in m.top()]
    assert scores == sorted(scores, reverse=True) and len(scores) == rdiff.TOP_N
    assert all(t.changed for t in m.top())
    # Figures: every alerted tensor first, then the biggest moves up to TOP_N
    drawn = [(o.layer, o.param) for o in d.overlays]
    alerted = list(dict.fromkeys((a.layer, a.param) for a in d.alerts if a.param))
    assert drawn[: len(alerted)] == alerted
    # then a tensor of each layer whose verdict changed, then the biggest moves; never an unchanged one
    assert {v.layer for v in m.verdict_changes} <= {layer for layer, _ in drawn}
    assert len(drawn) >= rdiff.TOP_N and len(set(drawn)) == len(drawn)
    assert all(t.changed for t in m.tensors if (t.layer, t.param) in drawn)
    # every Conv2D/Dense layer left its initialisation
    changes = {v.layer: (v.old, v.new) for v in m.verdict_changes}
    for layer in ("conv1", "conv2", "fc1", "predictions"):
        assert changes[layer] == ("at_init", "moved")
    assert not any(a.code == "verdict_regression" for a in d.alerts)


def test_reverse_diff_flags_regressions(reports) -> None:  # type: ignore[no-untyped-def]
    d = compute_diff(load(reports[1]), load(reports[0]), old_label="trained", new_label="untrained")
    (m,) = d.models
    assert m.removed_layers == () and m.added_layers == ()
    regressed = {a.layer for a in d.alerts if a.code == "verdict_regression" and a.severity == "critical"}
    assert {"conv1", "conv2", "fc1", "predictions"} <= regressed


def test_cli_summary(reports, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["diff", str(reports[0]), str(reports[1] / "stats.json")]) == 0
    out = capsys.readouterr().out
    assert "layers +0 -0" in out and "added layers" not in out and "old: old (Release old" in out
    assert "conv1 at_init -> moved" in out
    assert "most changed:" in out and "weights compared from untrained.keras and trained.keras" in out
    assert re.search(r"alerts: \d+ critical, \d+ warning", out)
    assert main(["diff", str(reports[0]), str(reports[1]), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_writes_html_pdf_json(reports, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "cmp"
    assert main(["diff", str(reports[0]), str(reports[1]), "--output", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["diff.html", "diff.json", "diff.pdf", "manifest.json"]
    html = (out / "diff.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("#", "data:")), attr
    ids = set(re.findall(r'id="([^"]+)"', html))
    for target in re.findall(r'href="#([^"]+)"', html):
        assert target in ids, target
    assert html.count("<img ") == rdiff.TOP_N
    assert "adam" not in html and "regression" not in html
    doc = json.loads((out / "diff.json").read_text())
    assert doc["schema_version"] == rdiff.DIFF_SCHEMA_VERSION
    assert doc["old"]["path"] == str(reports[0]) and doc["old"]["name"] == "old"
    assert doc["new"]["schema_version"] == "1.0"
    assert doc["thresholds"]["std_ratio_band"] == [0.5, 2.0]
    (m,) = doc["models"]
    assert m["added_layers"] == [] and len(m["tensors"]) == 12 and len(m["top"]) == rdiff.TOP_N
    assert "histogram" not in json.dumps(doc)
    pypdf = pytest.importorskip("pypdf")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out / "diff.pdf").pages)
    for heading in ("Release note: old → new", "What changed", "Alerts", "Biggest moves", "digits"):
        assert heading in text
    # an existing folder is refused without --force, and replaced with it
    before = (out / "diff.json").read_bytes()
    assert main(["diff", str(reports[0]), str(reports[1]), "-o", str(out), "--quiet"]) == 7
    assert (out / "diff.json").read_bytes() == before
    assert main(["diff", str(reports[1]), str(reports[0]), "-o", str(out), "-f", "json", "--force", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["diff.json", "manifest.json"]


def test_changed_weight_file_falls_back_to_statistics(reports) -> None:  # type: ignore[no-untyped-def]
    raw = _raw(reports[0])
    raw["models"][0]["source"]["files"][0]["sha256"] = "0" * 64
    d = compute_diff(_typed(raw, str(reports[0] / "stats.json")), load(reports[1]), old_label="old", new_label="new")
    (m,) = d.models
    assert m.weights_compared == 0 and "missing or changed" in m.weights_note
    assert all(t.rel_change is None and t.cosine is None for t in m.tensors)
    top = m.top()
    logs = [abs(np.log(t.std_ratio or np.nan)) for t in top]
    assert logs == sorted(logs, reverse=True) and top
    assert (
        compute_diff(*(load(p) for p in reports), old_label="a", new_label="b", weights=False)
        .models[0]
        .weights_compared
        == 0
    )


def _v09() -> dict[str, Any]:
    return _raw(DATA / "stats-v0.9.json")


def test_structure_changes_and_alerts() -> None:
    old = _v09()
    new = copy.deepcopy(old)
    layers = new["models"][0]["layers"]
    fc1 = layers[1]
    fc1["params"][0]["shape"] = [256, 64]  # reshaped
    fc1["params"].append({**fc1["params"][1], "name": "extra"})  # added tensor
    layers[0]["params"][0]["stats"]["std"] *= 3.0  # std tripled
    layers[0]["params"][1]["stats"]["nan"] = 2  # NaN appeared
    layers[0]["class_name"] = "Conv1D"
    del layers[2]
    layers.append({**old["models"][0]["layers"][2], "name": "fc_new"})
    old["models"][0]["layers"][0]["verdict"] = {
        "status": "moved",
        "layer": "conv1",
        "label": "",
        "reason": "",
    }
    layers[0]["verdict"] = {"status": "at_init", "layer": "conv1", "label": "", "reason": ""}
    d = compute_diff(_typed(old, "a.json"), _typed(new, "b.json"), old_label="a", new_label="b", weights=False)
    (m,) = d.models
    assert m.added_layers == ("fc_new",) and m.removed_layers == ("fc_old",)
    assert m.retyped_layers == (("conv1", "Conv2D", "Conv1D"),)
    assert [(r.layer, r.param, r.old_shape, r.new_shape) for r in m.reshaped_tensors] == [
        ("fc1", "kernel", (512, 64), (256, 64))
    ]
    assert [(r.layer, r.param) for r in m.added_tensors] == [("fc1", "extra")]
    codes = {(a.code, a.layer, a.param, a.severity) for a in d.alerts}
    assert codes == {
        ("std_shift", "conv1", "kernel", "warning"),
        ("nonfinite_appeared", "conv1", "bias", "critical"),
        ("verdict_regression", "conv1", None, "critical"),
    }
    lines = "\n".join(diff_summary(d))
    assert "reshaped: fc1/kernel (512, 64) -> (256, 64)" in lines and "conv1 moved -> at_init" in lines


def test_models_matched_by_name_unless_single() -> None:
    old, new = _v09(), _v09()
    new["models"][0]["name"] = "renamed"
    (m,) = compute_diff(_typed(old), _typed(new), old_label="a", new_label="b").models
    assert (m.old_name, m.new_name) == ("digits-0.9", "renamed")
    new["models"].append({**copy.deepcopy(old["models"][0]), "name": "digits-0.9"})
    d = compute_diff(_typed(old), _typed(new), old_label="a", new_label="b")
    # the same name wins; the renamed copy shares every tensor with nothing left on the old side: added
    assert [mm.new_name for mm in d.models] == ["digits-0.9"]
    assert d.unmatched_new == ("renamed",) and d.unmatched_old == ()


def test_renamed_model_pairs_by_its_tensors() -> None:
    base = _v09()["models"][0]
    a = {**copy.deepcopy(base), "name": "A"}
    b = {**copy.deepcopy(base), "name": "B"}
    b["layers"] = b["layers"][:1]
    c = {**copy.deepcopy(base), "name": "C"}
    for layer in c["layers"]:
        layer["name"] = "other_" + layer["name"]
    old = {**_v09(), "models": [a, b]}
    new = {**_v09(), "models": [a, {**b, "name": "B2"}, c]}
    d = compute_diff(_typed(old), _typed(new), old_label="a", new_label="b")
    assert [(m.old_name, m.new_name) for m in d.models] == [("A", "A"), ("B", "B2")]
    assert d.unmatched_old == () and d.unmatched_new == ("C",)
    assert d.models[1].name == "B → B2"


@pytest.mark.slow
def test_names_are_escaped_in_html() -> None:
    old, new = _v09(), _v09()
    for doc in (old, new):
        doc["models"][0]["layers"][0]["name"] = "<script>alert(1)</script>"
    new["models"][0]["layers"][0]["params"][0]["stats"]["std"] = 1.0
    d = compute_diff(_typed(old, "<b>a</b>/stats.json"), _typed(new), old_label="<b>a</b>", new_label="b")
    html = render_diff(d, ("html", "pdf"))["diff.html"].decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>a</b>" not in html


def test_render_only_requested_formats() -> None:
    d = compute_diff(_typed(_v09()), _typed(_v09()), old_label="a", new_label="b")
    assert set(render_diff(d, ("json",))) == {"diff.json"}
    assert set(render_diff(d, ("html", "json"))) == {"diff.html", "diff.json"}


@pytest.mark.parametrize("old_chunk,new_chunk", [(7, 7), (5, 13), (1000, 3)])
def test_weight_change_is_chunking_independent(old_chunk: int, new_chunk: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=101).astype(np.float32)
    b = (a + 0.1 * rng.normal(size=101)).astype(np.float32)

    def chunks(x: np.ndarray, n: int) -> list[np.ndarray]:
        return [x[i : i + n] for i in range(0, x.size, n)]

    rel, dist, cos = weight_change(chunks(a, old_chunk), chunks(b, new_chunk))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert dist == pytest.approx(np.linalg.norm(b64 - a64), rel=1e-12)
    assert rel == pytest.approx(np.linalg.norm(b64 - a64) / np.linalg.norm(a64), rel=1e-12)
    assert cos == pytest.approx(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)), rel=1e-12)
    assert weight_change(chunks(a, old_chunk), chunks(a, new_chunk)) == (0.0, 0.0, pytest.approx(1.0))
    with pytest.raises(ValueError):
        weight_change([a], [b[:50]])


def test_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = DATA / "stats-v0.9.json"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"schema_version": "2.0", "models": []}))
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong.json"
    raw = _v09()
    raw["models"][0]["layers"][1]["params"][0]["shape"] = "wide"
    wrong.write_text(json.dumps(raw))
    # a build killed between its two renames leaves the previous report beside the missing folder
    (tmp_path / ".rep.old-4242-x1").mkdir()
    cases = [
        (wrong, "wrong.json: models[0].layers[1].params[0].shape: Input should be a valid tuple"),
        (tmp_path / "rep", "rep: no such file or folder (.rep.old-4242-x1 beside it holds the previous report"),
        (tmp_path / "missing", "missing: no such file or folder"),
        (bad_json, "bad.json: not a stats.json (invalid JSON at line 1)"),
        (other, "other.json: not a stats.json (no schema_version and models)"),
        (future, "future.json: unsupported schema_version '2.0' (this reportgen reads 0.9, 1.0)"),
        (empty, "empty: folder holds no stats.json"),
    ]
    for path, message in cases:
        assert main(["diff", str(path), str(good)]) == 4
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("reportgen: error: ") and message in err, err
