"""Release history over six releases built in the test: trained, unchanged, re-initialised, NaN, renamed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from release_data import build, mlp

from reportgen.cli import main
from reportgen.history import HistoryModel, compute_history
from reportgen.stats_json import load

SIZES = [32, 64, 64, 64, 10]
NAMES = ["v1", "v2", "v3", "v4", "v5", "v6"]


def _releases() -> list[tuple[str, dict[str, np.ndarray]]]:
    """Return (model name, tensors) of each release."""
    v1 = mlp(1, SIZES)
    rng = np.random.default_rng(2)
    v2 = {k: (1.6 * w + 0.01 * rng.standard_normal(w.shape)).astype(np.float32) for k, w in v1.items()}
    v4 = dict(v2)
    v4["fc2.weight"] = mlp(99, SIZES)["fc2.weight"]  # re-initialised: back at a fresh draw
    v5 = dict(v4)
    w = v5["fc3.weight"].copy()
    w[3, 4] = np.nan
    v5["fc3.weight"] = w
    v6 = dict(v5)
    v6["fc5.weight"] = 1.6 * mlp(5, [10, 10])["fc1.weight"]
    return [("mlp", v1), ("mlp", v2), ("mlp", dict(v2)), ("mlp", v4), ("mlp", v5), ("mlp-v6", v6)]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[dict[str, np.ndarray]]]:
    folder = tmp_path_factory.mktemp("history")
    paths, arrays = [], []
    for name, (model, tensors) in zip(NAMES, _releases(), strict=True):
        code, out = build(folder, name, {model: tensors})
        assert code == 0
        paths.append(out)
        arrays.append(tensors)
    return paths, arrays


def _model(paths: list[Path]) -> HistoryModel:
    return compute_history([load(p) for p in paths], [str(p) for p in paths])


def test_series_match_numpy(history: tuple[list[Path], list[dict[str, np.ndarray]]]) -> None:
    paths, arrays = history
    h = _model(paths)
    assert [r.name for r in h.releases] == NAMES
    (m,) = h.models
    assert m.name == "mlp-v6" and m.names == ("mlp",) * 5 + ("mlp-v6",)
    assert [s.layer for s in m.layers] == ["fc1", "fc2", "fc3", "fc4", "fc5"]
    for s in m.layers:
        fan_in = SIZES[int(s.layer[2:]) - 1] if s.layer != "fc5" else 10
        init_std = (1.0 / np.sqrt(fan_in)) / np.sqrt(3.0)  # PyTorch's default: uniform within 1/sqrt(fan_in)
        assert s.param == "weight"
        for r, tensors in enumerate(arrays):
            w = tensors.get(f"{s.layer}.weight")
            assert s.present[r] == (w is not None)
            if w is None:
                assert s.std_init[r] is None and s.mean_abs[r] is None and s.verdicts[r] is None
                continue
            w64 = w.astype(np.float64)
            assert s.std_init[r] == pytest.approx(np.nanstd(w64) / init_std, rel=1e-6)
            assert s.mean_abs[r] == pytest.approx(np.nanmean(np.abs(w64)), rel=1e-6)
            assert s.nonfinite[r] == int(np.isnan(w64).sum())
    fc1 = m.layers[0]
    assert fc1.verdicts[0] == "at_init" and fc1.verdicts[1:5] == ("moved",) * 4


def test_moves_and_first_problem(history: tuple[list[Path], list[dict[str, np.ndarray]]]) -> None:
    (m,) = _model(history[0]).models
    assert {mv.layer for mv in m.moves_at(1)} == {"fc1", "fc2", "fc3", "fc4"}  # trained: every layer moved
    assert m.moves_at(2) == ()  # v3 is v2 again
    assert [(mv.layer, mv.what) for mv in m.moves_at(3)] == [("fc2", "verdict moved → at_init (regression)")]
    assert [(mv.layer, mv.what) for mv in m.moves_at(4)] == [("fc3", "1 NaN/Inf appeared")]
    assert m.moves_at(5) == ()  # fc5 is new: nothing to move from
    assert m.first_wrong == 3
    problems = {(p.layer, p.code): p for p in m.problems}
    regression = problems[("fc2", "verdict_regression")]
    assert (regression.first, regression.severity) == (3, "critical")
    nan = next(p for p in m.problems if p.layer == "fc3" and p.severity == "critical")
    assert (nan.first, nan.persists) == (4, True)
    assert all(p.first >= 3 for p in m.problems if p.severity == "critical")
    assert m.still_count == 1  # only the new fc5 never moved


@pytest.mark.slow
@pytest.mark.parametrize("formats", ["html,pdf,json"])
def test_cli_writes_every_format(
    history: tuple[list[Path], list[dict[str, np.ndarray]]],
    formats: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = [str(p) for p in history[0]]
    paths[2] += "/stats.json"  # a stats.json file works as well as its folder
    out = tmp_path / "h"
    assert main(["history", *paths, "-o", str(out), "-f", formats]) == 0
    stdout = capsys.readouterr().out
    assert "model mlp-v6: in 6 releases, 5 layers" in stdout and "first went wrong in v4" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["history.html", "history.json", "history.pdf", "manifest.json"]
    doc = json.loads((out / "history.json").read_text())
    assert [r["name"] for r in doc["releases"]] == NAMES
    (m,) = doc["models"]
    assert m["first_wrong"] == 3 and len(m["layers"]) == 5 and all(len(s["std_init"]) == 6 for s in m["layers"])
    html = (out / "history.html").read_text()
    assert html.count("<img ") == 3 and "first went wrong in v4" in html
    assert 'http-equiv="Content-Security-Policy"' in html
    pypdf = pytest.importorskip("pypdf")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out / "history.pdf").pages)
    for words in ("Release history: v1 → v6", "first went wrong in v4", "What went wrong, and when", "v3 → v4"):
        assert words in text, words
    # an existing folder is refused without --force
    assert main(["history", *paths, "-o", str(out), "-q"]) == 7


def test_errors_are_one_line(
    history: tuple[list[Path], list[dict[str, np.ndarray]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = str(history[0][0])
    assert main(["history", first, "-o", str(tmp_path / "a")]) == 2
    bad = tmp_path / "bad.json"
    raw = json.loads((history[0][1] / "stats.json").read_text())
    raw["models"][0]["layers"][0]["verdict"]["status"] = "fine"
    bad.write_text(json.dumps(raw))
    capsys.readouterr()
    cases = [
        (tmp_path / "gone", "gone: no such file or folder"),
        (bad, "bad.json: models[0].layers[0].verdict.status: Input should be 'at_init', 'moved'"),
    ]
    for path, message in cases:
        assert main(["history", first, str(path), "-o", str(tmp_path / "b")]) == 4
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "b").exists()
