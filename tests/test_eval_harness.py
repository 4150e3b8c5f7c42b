"""The evaluation harness scores verdicts and alerts against labels (crafted cases that need no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

EVAL = Path(__file__).resolve().parent.parent / "eval"


@pytest.fixture(scope="module")
def evalpkg():
    sys.path.insert(0, str(EVAL))
    try:
        import crafted
        import harness

        yield harness, crafted
    finally:
        sys.path.remove(str(EVAL))


def test_harness_scores_untrained_and_broken_models(evalpkg, tmp_path: Path):
    harness, crafted = evalpkg
    from safetensors.numpy import save_file

    fresh = crafted.fresh(0)
    save_file(fresh, str(tmp_path / "fresh.safetensors"))
    broken = {k: v.copy() for k, v in fresh.items()}
    broken["net.5.weight"][0, 0] = np.nan
    save_file(broken, str(tmp_path / "nan.safetensors"))
    at_init = (("*", "at_init"),)
    cases = [
        harness.Case("untrained", "mlp", tmp_path / "fresh.safetensors", {}, at_init, kind="crafted"),
        harness.Case(
            "nan", "mlp", tmp_path / "nan.safetensors", {}, at_init, (("net.5", "non-finite"),), kind="crafted"
        ),
        # A wrong label and an alert that is not raised: the harness must count both against the tool.
        harness.Case(
            "mislabelled",
            "mlp",
            tmp_path / "fresh.safetensors",
            {},
            (("net.3", "moved"), ("*", "at_init")),
            (("net.7", "dead-units"),),
            kind="crafted",
        ),
    ]
    scores = harness.run(cases, tmp_path / "work")
    untrained, nan, wrong = scores
    assert (untrained.right, untrained.layers, untrained.false_alarms) == (5, 5, [])
    assert (nan.found_alerts, nan.expected_alerts, nan.false_alarms) == (1, 1, [])
    assert wrong.wrong == ["net.3: expected moved, got at_init"] and wrong.missed == ["net.7: dead-units"]
    table = harness.table(scores)
    assert "| untrained | crafted | 5 / 5 | - | - | 0 |" in table
    assert "**14 / 15 (93.3%)**" in table and "**1 / 2 (50%)**" in table


def test_labels_of_every_real_model_are_well_formed(evalpkg):
    import yaml

    harness, _ = evalpkg
    doc = yaml.safe_load((EVAL / "models.yaml").read_text())
    assert len(doc["models"]) >= 6 and len({m["family"] for m in doc["models"]}) >= 6
    for m in doc["models"]:
        assert set(m["labels"].values()) <= set(harness.VERDICT_LABELS), m["name"]
        assert "==" in m["wheel"] and m["sha256"] and len(m["sha256"]) == 64
