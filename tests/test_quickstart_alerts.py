"""The shipped quickstart: no warning or critical alert on the healthy HED model, and real faults alerted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HED = "VGG-16 trained (HED)"


def alerts(stats: Path, model: str) -> list[tuple[str, str, str]]:
    doc = json.loads((stats / "stats.json").read_text())
    return [(a["severity"], a["code"], a["layer"]) for a in doc["alerts"] if a["model"] == model]


def test_healthy_hed_raises_no_warning(quickstart_json: Path):
    doc = json.loads((quickstart_json / "stats.json").read_text())
    hed = next(m for m in doc["models"] if m["name"] == HED)
    assert {la["verdict"]["status"] for la in hed["layers"] if la["verdict"]} == {"moved"}
    # The side-output heads are compared with their own initializers (zeros, constant 0.2), not glorot.
    assert "dsn*: kernel zeros, bias zeros" in hed["init_statement"]
    assert [a for a in alerts(quickstart_json, HED) if a[0] != "info"] == []


def test_modified_hed_faults_are_alerted(quickstart_modified: Path):
    found = {a for a in alerts(quickstart_modified, HED) if a[0] != "info"}
    assert ("warning", "at-init-in-trained-model", "block3_conv1") in found  # re-drawn from glorot_uniform
    assert ("critical", "non-finite", "block4_conv2") in found
    assert {a[2] for a in found} == {"block3_conv1", "block4_conv2"}  # the x3 kernel is no fault
