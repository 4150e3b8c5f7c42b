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
