"""The PDF as a reviewer gets it: pages, bookmarks, page numbers, no blank page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pypdf = pytest.importorskip("pypdf")


def test_page_numbers_and_title_page(built: Path) -> None:
    reader = pypdf.PdfReader(built / "report.pdf")
    n = len(reader.pages)
    first = reader.pages[0].extract_text()
    assert "Digits CNN <script>alert(1)</script>" in first  # the title, as text, on the title page
    assert "untrained" in first and "2026-01-01" in first
    for i, page in enumerate(reader.pages[1:], start=2):
        assert re.search(rf"\b{i} / {n}\b", page.extract_text()), f"page {i} has no 'n / N' number"
    assert reader.pages[0].mediabox.width == pytest.approx(595.28, abs=1)  # A4 portrait
    assert reader.pages[0].mediabox.height == pytest.approx(841.89, abs=1)


def test_no_blank_page(built: Path, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed (apt-get install poppler-utils)")
    from PIL import Image

    subprocess.run(["pdftoppm", "-png", "-r", "30", str(built / "report.pdf"), str(tmp_path / "p")], check=True)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) == len(pypdf.PdfReader(built / "report.pdf").pages)
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"))
        assert (pixels < 200).mean() > 0.002, f"{page.name} looks blank"


def _text(pdf: Path) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(pdf).pages]


def test_pdf_full_keeps_every_table(built: Path, digits_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import write_digits_config

    from reportgen.cli import main

    cfg = write_digits_config(tmp_path, digits_models)
    cfg.write_text(cfg.read_text().replace("models:", "pdf: full\nformats: [pdf]\nmodels:", 1))
    assert main(["build", str(cfg), "--quiet"]) == 0
    full, brief = _text(tmp_path / "report" / "report.pdf"), _text(built / "report.pdf")
    joined = "\n".join(full)
    for heading in ("Every verdict", "Initialisation check", "Architecture", "Appendix: every tensor", "skewness"):
        assert heading in joined and heading not in "\n".join(brief)
    assert len(full) > len(brief)
    assert "Click a column head" not in joined


@pytest.mark.slow
def test_quickstart_pdf_answers_on_page_one_within_twelve_pages(tmp_path: Path) -> None:
    from reportgen.cli import main

    root = Path(__file__).resolve().parent.parent
    assert main(["build", str(root / "configs" / "quickstart.yaml"), "-o", str(tmp_path / "q"), "-f", "pdf", "-q"]) == 0
    pages = _text(tmp_path / "q" / "report.pdf")
    assert len(pages) <= 12
    first = pages[0]
    for name in ("VGG-16 untrained is untrained", "VGG-16 trained (HED) is trained", "ResNet50 untrained is untrained"):
        assert name in " ".join(first.split())
    assert "most important findings" in first and "No alerts" in first
    # The untrained-vs-trained comparison and the initial limits come before any per-model detail.
    story = next(i for i, t in enumerate(pages) if "Untrained vs trained" in t and "initial distribution" in t)
    assert story < 4
    assert next(i for i, t in enumerate(pages) if "Initial limits" in t) < 4
    assert all("Appendix" not in t and "Click a column head" not in t for t in pages)
