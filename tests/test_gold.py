"""Golden files: stats.json, the HTML outline and the release diff of a small fixed model stay as checked in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gold_model import write_release
from goldtest import compare, html_outline, scrub_json

from reportgen.cli import main


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """Build the reports of both releases of the fixed model; return them and the scrubber's replacements."""
    root = tmp_path_factory.mktemp("gold")
    reports = []
    for release in (1, 2):
        cfg = write_release(root / f"weights{release}", release, root / f"release{release}")
        assert main(["build", str(cfg), "--quiet"]) == 0
        reports.append(root / f"release{release}")
    return reports[0], reports[1], {str(root): "<tmp>"}


def test_stats_json(releases: tuple[Path, Path, dict[str, str]]) -> None:
    old, new, replacements = releases
    compare("stats.json", scrub_json(json.loads((old / "stats.json").read_text()), replacements))
    from reportgen.schema import validate_stats

    for folder in (old, new):  # both releases, as written, against the schema generated from the types
        validate_stats(json.loads((folder / "stats.json").read_text()))


def test_html_outline(releases: tuple[Path, Path, dict[str, str]]) -> None:
    old, _, replacements = releases
    compare("report.outline.txt", html_outline((old / "report.html").read_text(), replacements))


def test_release_diff(releases: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    old, new, replacements = releases
    out = tmp_path / "diff"
    assert main(["diff", str(old), str(new), "-o", str(out), "-f", "json", "--quiet"]) == 0
    compare("diff.json", scrub_json(json.loads((out / "diff.json").read_text()), replacements))
