"""Regenerate the README's pictures from the quickstart report: the HTML (top of page) and one PDF page."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "quickstart"
DOCS = ROOT / "docs"


def main() -> int:
    """Build the quickstart report if needed, then write docs/report-html.png and docs/report-pdf.png."""
    if not (REPORT / "report.html").exists():
        subprocess.run(
            [sys.executable, "-m", "reportgen", "build", "configs/quickstart.yaml", "--force", "-q"],
            cwd=ROOT,
            check=True,
        )
    chromium = shutil.which("chromium")
    if chromium is None or shutil.which("pdftoppm") is None:
        print("screenshots need chromium and pdftoppm (apt-get install chromium poppler-utils)", file=sys.stderr)
        return 2
    from PIL import Image
    from playwright.sync_api import sync_playwright

    DOCS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page.goto((REPORT / "report.html").resolve().as_uri())
        page.screenshot(path=str(DOCS / "report-html.png"))
        browser.close()
    # Page 1: the answer per model, the ranked findings and the report's one figure.
    first = 1
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "70",
                "-f",
                str(first),
                "-l",
                str(first),
                str(REPORT / "report.pdf"),
                f"{tmp}/page",
            ],
            check=True,
        )
        shot = next(Path(tmp).glob("page*.png"))
        Image.open(shot).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(
            DOCS / "report-pdf.png", optimize=True
        )
    Image.open(DOCS / "report-html.png").convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(
        DOCS / "report-html.png", optimize=True
    )
    print(f"wrote {DOCS / 'report-html.png'} and {DOCS / 'report-pdf.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
