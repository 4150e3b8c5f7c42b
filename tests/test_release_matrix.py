"""diff, --fail-on and compare_to on multi-model releases: models added, removed, renamed; every format."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from release_data import build, mlp

from reportgen import diff as rdiff
from reportgen.cli import main
from reportgen.diff import compute_diff
from reportgen.stats_json import load


@dataclass
class Releases:
    folder: Path
    r1: Path
    r2: Path
    r3: Path
    v1: dict[str, dict[str, np.ndarray]]
    v2: dict[str, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """r1: encoder, decoder, head. r2: encoder x3 and restructured, decoder renamed and nudged, head gone,
    classifier new, other layer selection. r3: r2 with a NaN in the classifier."""
    folder = tmp_path_factory.mktemp("releases")
    v1 = {"encoder": mlp(1, [16, 32, 32, 32, 32, 16, 8]), "decoder": mlp(2, [8, 16, 16, 16, 8]), "head": mlp(3, [8, 4])}
    enc = {k: (3.0 * v if k.endswith("weight") else v) for k, v in v1["encoder"].items()}
    enc["fc5.weight"] = enc["fc5.weight"][:, :16].copy()  # reshaped
    del enc["fc6.weight"], enc["fc6.bias"]  # layer removed
    enc["fc7.weight"] = 2.5 * mlp(5, [8, 4])["fc1.weight"]  # layer added, trained like the rest
    rng = np.random.default_rng(9)
    dec = {
        k: v + (0.05 * np.abs(v).mean() * rng.standard_normal(v.shape)).astype(np.float32)
        for k, v in v1["decoder"].items()
    }
    v2 = {"encoder": enc, "decoder-v2": dec, "classifier": mlp(4, [8, 10])}
    v3 = {k: dict(v) for k, v in v2.items()}
    w = v3["classifier"]["fc1.weight"].copy()
    w[0, 0] = np.nan
    v3["classifier"]["fc1.weight"] = w
    code1, r1 = build(folder, "r1", v1, formats="html,pdf,json")
    code2, r2 = build(folder, "r2", v2, formats="json", selector='{glob: "fc*"}')
    code3, r3 = build(folder, "r3", v3, formats="json")
    assert (code1, code2, code3) == (0, 0, 0)
    return Releases(folder, r1, r2, r3, v1, v2)


@pytest.mark.slow
def test_models_added_removed_renamed(releases: Releases) -> None:
    d = compute_diff(load(releases.r1), load(releases.r2), old_label="r1", new_label="r2")
    assert (d.old.name, d.new.name) == ("r1", "r2")
    assert [(m.old_name, m.new_name) for m in d.models] == [("encoder", "encoder"), ("decoder", "decoder-v2")]
    assert d.unmatched_old == ("head",) and d.unmatched_new == ("classifier",)
    enc, dec = d.models
    assert enc.removed_layers == ("fc6",) and enc.added_layers == ("fc7",)
    assert [(r.layer, r.param, r.old_shape, r.new_shape) for r in enc.reshaped_tensors] == [
        ("fc5", "weight", (16, 32), (16, 16))
    ]
    # Every kernel tripled: relative change 2 and std ratio 3, against NumPy on the arrays themselves.
    for t in enc.tensors:
        a = releases.v1["encoder"][f"{t.layer}.{t.param}"].astype(np.float64)
        b = 3.0 * a if t.param == "weight" else a
        assert t.changed == (t.param == "weight")
        assert t.rel_change == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-6, abs=1e-12)
        assert t.std_ratio == pytest.approx(b.std() / a.std(), rel=1e-6)
    for t in dec.tensors:
        a = releases.v1["decoder"][f"{t.layer}.{t.param}"].astype(np.float64)
        b = releases.v2["decoder-v2"][f"{t.layer}.{t.param}"].astype(np.float64)
        assert t.rel_change == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-6)
        cosine = (a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
        assert t.cosine == pytest.approx(cosine, rel=1e-9)
    # Figures: every alerted encoder kernel, then the decoder's biggest moves; never an unchanged tensor.
    drawn = {(o.model, o.layer, o.param) for o in d.overlays}
    assert {(o.layer, o.param) for o in d.overlays if o.model == "encoder"} == {
        (t.layer, t.param) for t in enc.tensors if t.changed
    }
    assert len([o for o in d.overlays if o.model == "decoder → decoder-v2"]) == rdiff.TOP_N
    unchanged = {(m.name, t.layer, t.param) for m in d.models for t in m.tensors if not t.changed}
    assert not drawn & unchanged


@pytest.mark.slow
def test_all_formats_and_pdf_pages(releases: Releases, tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert main(["diff", str(releases.r1), str(releases.r2), "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["diff.html", "diff.json", "diff.pdf", "manifest.json"]
    doc = json.loads((out / "diff.json").read_text())
    html = (out / "diff.html").read_text()
    assert html.count("<img ") == len(doc["figures"]) >= 10  # more figures than one PDF page holds
    assert "Release note: r1 → r2" in html and "r1 (dashed) and r2 (solid)" in html
    assert doc["unmatched_models"] == {"old": ["head"], "new": ["classifier"]}
    assert doc["summary"]["changed"] == sum(t["changed"] for m in doc["models"] for t in m["tensors"])
    pypdf = pytest.importorskip("pypdf")
    pages = [p.extract_text() for p in pypdf.PdfReader(out / "diff.pdf").pages]
    text = "\n".join(pages)
    for words in ("Release note: r1 → r2", "What changed", "Biggest moves", "Structure", "decoder → decoder-v2"):
        assert words in text, words
    assert "removed): head" in text.replace("\n", " ") and "added): classifier" in text.replace("\n", " ")
    assert str(releases.folder) not in "".join(pages[1:])  # legends and headings name releases, not folders
    assert 2 <= len(pages) <= 8


def test_same_release_has_nothing_to_report(releases: Releases, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(releases.r1), str(releases.r1 / "stats.json"), "--fail-on", "warning"]) == 0
    out = capsys.readouterr().out
    n = sum(len(tensors) for tensors in releases.v1.values())
    assert f"0 of {n} matched tensors changed, {n} unchanged" in out
    d = compute_diff(load(releases.r1), load(releases.r1), old_label="a", new_label="b")
    assert d.overlays == () and d.alerts == () and d.new_alerts == ()


def test_gate_exit_codes(releases: Releases, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r1, r2, r3 = (str(p) for p in (releases.r1, releases.r2, releases.r3))
    # r1 -> r2: tripled kernels are warnings (std shift, large change), nothing critical.
    assert main(["diff", r1, r2, "--fail-on", "critical", "-q"]) == 0
    assert main(["diff", r1, r2, "--fail-on", "warning", "-q"]) == 10
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"reportgen: error: release gate --fail-on warning: warning \S+ encoder fc\d/weight \(and \d+ more\)", err
    ), err
    # r2 -> r3: a NaN appears in the classifier: critical, and the report is still written before the exit.
    out = tmp_path / "gate"
    assert main(["diff", r2, r3, "--fail-on", "critical", "-o", str(out), "-q"]) == 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "critical nonfinite_appeared classifier fc1/weight" in err
    assert sorted(p.name for p in out.iterdir()) == ["diff.html", "diff.json", "diff.pdf", "manifest.json"]
    assert main(["diff", r1, r2, "--fail-on", "info"]) == 2  # only warning and critical gate


@pytest.mark.slow
def test_compare_to_writes_diff(releases: Releases) -> None:
    code, out = build(releases.folder, "r2c", releases.v2, formats="json,html", compare_to=releases.r1)
    assert code == 0
    assert {"stats.json", "report.html", "diff.json", "diff.html", "manifest.json"} <= {p.name for p in out.iterdir()}
    doc = json.loads((out / "diff.json").read_text())
    assert (doc["old"]["name"], doc["new"]["name"]) == ("r1", "r2c")
    cli = compute_diff(load(releases.r1), load(out), old_label="a", new_label="b")
    assert doc["summary"]["changed"] == cli.changed_count and doc["unmatched_models"]["old"] == ["head"]


@pytest.mark.parametrize("bad", ["missing", "version", "content"])
def test_compare_to_failure_keeps_the_report(
    releases: Releases, bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "old"
    if bad != "missing":
        raw = json.loads((releases.r1 / "stats.json").read_text())
        if bad == "version":
            raw["schema_version"] = "7.0"
        else:
            raw["models"][0]["layers"][0]["params"][0]["stats"]["std"] = "wide"
        target.mkdir()
        (target / "stats.json").write_text(json.dumps(raw))
    code, out = build(tmp_path, "new", releases.v2, formats="json", compare_to=target)
    assert code == 9
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "stats.json"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reportgen: error: ") and "compare_to" in err[0], err
    expected = {
        "missing": "old: no such file or folder",
        "version": "unsupported schema_version '7.0'",
        "content": "models[0].layers[0].params[0].stats.std: Input should be a valid number",
    }[bad]
    assert expected in err[0]


def test_comparison_crash_keeps_the_report(
    releases: Releases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(rdiff, "compute_diff", broken)
    code, out = build(tmp_path, "new", releases.v2, formats="json", compare_to=releases.r1)
    assert code == 9 and (out / "stats.json").is_file() and not (out / "diff.json").exists()
    err = capsys.readouterr().err.strip()
    assert err.endswith("comparison failed: ZeroDivisionError: float division by zero") and "\n" not in err


def test_exit_codes_are_documented() -> None:
    from reportgen.errors import EXIT_CODES, ComparisonError, GateFailure

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for code in (ComparisonError.exit_code, GateFailure.exit_code):
        assert code in EXIT_CODES and f"\n| {code} | " in readme


@pytest.mark.slow
def test_history_follows_added_removed_and_renamed_models(releases: Releases, tmp_path: Path) -> None:
    from reportgen.history import compute_history

    paths = [releases.r1, releases.r2, releases.r3]
    h = compute_history([load(p) for p in paths], [str(p) for p in paths])
    names = {m.name: m.names for m in h.models}
    assert names == {
        "encoder": ("encoder", "encoder", "encoder"),
        "decoder-v2": ("decoder", "decoder-v2", "decoder-v2"),
        "head": ("head", None, None),
        "classifier": (None, "classifier", "classifier"),
    }
    classifier = next(m for m in h.models if m.name == "classifier")
    assert classifier.first_wrong == 2  # the NaN of r3
    out = tmp_path / "h"
    assert main(["history", *map(str, paths), "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["history.html", "history.json", "history.pdf", "manifest.json"]
