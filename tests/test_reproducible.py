"""Two builds of one config with the same SOURCE_DATE_EPOCH give the same bytes."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reportgen.cli import main


@pytest.fixture(scope="module")
def again(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the digits config a second time, into another folder."""
    out = tmp_path_factory.mktemp("again") / "report"
    assert main(["build", str(built.parent / "digits.yaml"), "--output", str(out), "--quiet"]) == 0
    return out


def test_rebuild_is_byte_identical(built: Path, again: Path) -> None:
    names = sorted(p.name for p in built.iterdir())
    assert (
        names
        == sorted(p.name for p in again.iterdir())
        == [
            "manifest.json",
            "report.html",
            "report.pdf",
            "stats.json",
        ]
    )
    for name in ("report.html", "stats.json", "manifest.json"):
        assert (built / name).read_bytes() == (again / name).read_bytes(), name
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    stamp = datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")
    assert json.loads((again / "stats.json").read_text())["generated_at"] == stamp
    assert stamp in (again / "report.html").read_text()


def test_pdf_is_identical(built: Path, again: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    first, second = pypdf.PdfReader(built / "report.pdf"), pypdf.PdfReader(again / "report.pdf")
    assert len(first.pages) == len(second.pages) >= 4
    for i, (a, b) in enumerate(zip(first.pages, second.pages, strict=True)):
        assert a.extract_text() == b.extract_text(), f"page {i + 1}"
    # WeasyPrint writes no /ID and no dates unless asked (pdf_identifier=, a dcterms.created
    # meta tag): with the build time fixed, the bytes are the same.
    assert first.trailer.get("/ID") is None
    assert "/CreationDate" not in (first.metadata or {})
    assert (built / "report.pdf").read_bytes() == (again / "report.pdf").read_bytes()
