"""Open the report in headless Chromium: no console errors, no network, links resolve, both widths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.browser

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_report_in_browser(browser, built: Path, tmp_path: Path, width: int) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900})
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    url = (built / "report.html").resolve().as_uri()
    page.goto(url)
    page.wait_for_load_state("load")
    assert console == []
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    broken = page.evaluate(
        """() => Array.from(document.querySelectorAll('a[href^="#"]'))
              .map(a => a.getAttribute('href').slice(1))
              .filter(id => !document.getElementById(id))"""
    )
    assert broken == []
    # Nothing wider than the viewport: the page never scrolls sideways (tables scroll inside their box).
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    images = page.evaluate("() => Array.from(document.images).map(i => [i.naturalWidth > 0, i.alt.length > 0])")
    assert images and all(ok and alt for ok, alt in images)
    shot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_tables_sort_on_click(browser, built: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((built / "report.html").resolve().as_uri())
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    table = page.locator("#appendix table.sortable").first
    column = table.locator("thead th").nth(6)  # std
    column.click()
    first = table.locator("tbody tr td:nth-child(7)").all_inner_texts()
    values = [float(v.replace("−", "-")) for v in first]
    assert values == sorted(values)
    column.click()
    again = [float(v.replace("−", "-")) for v in table.locator("tbody tr td:nth-child(7)").all_inner_texts()]
    assert again == sorted(values, reverse=True)
    page.close()
