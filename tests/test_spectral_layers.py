"""spectral_layers: spectra only for the layers whose names match a shell-style pattern."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen.analysis import AnalysisOptions
from reportgen.cli import main


def test_patterns_choose_the_layers() -> None:
    opts = AnalysisOptions(spectral_layers=("model.layers.0.*", "lm_head"))
    assert opts.wants_spectrum("model.layers.0.mlp.up_proj")
    assert opts.wants_spectrum("lm_head")
    assert not opts.wants_spectrum("model.layers.10.mlp.up_proj")
    assert AnalysisOptions().wants_spectrum("anything")
    assert not AnalysisOptions(spectral=False, spectral_layers=("*",)).wants_spectrum("anything")


def _build(tmp_path: Path, extra: str) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    model = tmp_path / "m.safetensors"
    save_file({f"block{i}.proj.weight": rng.standard_normal((64, 48), dtype=np.float32) for i in range(3)}, model)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        f"title: t\noutput: {tmp_path / 'out'}\nformats: [json]\n{extra}models:\n  - {{name: m, path: {model}}}\n"
    )
    assert main(["build", str(cfg), "--quiet", "--force", "--executor", "inline"]) == 0
    return json.loads((tmp_path / "out" / "stats.json").read_text())  # type: ignore[no-any-return]


def test_only_matching_layers_get_spectra(tmp_path: Path) -> None:
    doc = _build(tmp_path, 'spectral_layers: ["block0.*", "block2.proj"]\n')
    got = {layer["name"]: layer["params"][0].get("spectral") is not None for layer in doc["models"][0]["layers"]}
    assert got == {"block0.proj": True, "block1.proj": False, "block2.proj": True}


def test_empty_pattern_list_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.safetensors"
    save_file({"a.weight": np.ones((4, 4), dtype=np.float32)}, model)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        f"title: t\noutput: {tmp_path / 'out'}\nspectral_layers: []\nmodels:\n  - {{name: m, path: {model}}}\n"
    )
    assert main(["build", str(cfg), "--quiet"]) == 3
    assert "spectral_layers" in capsys.readouterr().err
